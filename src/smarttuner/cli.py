"""The `smarttuner` command line: parse, build a config, call one library function.

Every command is a thin shell over a function of the same name in the library.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from smarttuner.config import (
    ConfigError,
    GRPOConfig,
    PipelineConfig,
    SFTConfig,
    build_config,
    parse_override,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="SmartTuner: teach small language models to reason with GRPO.",
)
console = Console(stderr=True)
log = logging.getLogger("smarttuner")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML recipe.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override any config field: key.path=value (repeatable)."),
]
ModelOpt = Annotated[str | None, typer.Option(help="Hub id, local dir, or smollm2-135m-instruct.")]
TaskOpt = Annotated[str | None, typer.Option(help="Task name (registered or reasoning-gym).")]
OutOpt = Annotated[Path | None, typer.Option("--output-dir", "-o", help="Run output directory.")]


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)],
    )
    for noisy in ("transformers", "peft", "accelerate", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _overrides(sets: list[str] | None, named: dict[str, Any]) -> dict[str, Any]:
    values = dict(named)
    for item in sets or []:
        key, value = parse_override(item)
        values[key] = value
    return values


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _run(fn, *args, **kwargs):
    """Call a library function; known failures become one red line and a non-zero exit."""
    from smarttuner.errors import USER_ERRORS

    try:
        return fn(*args, **kwargs)
    except USER_ERRORS as err:
        _fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    _setup_logging(verbose)


@app.command()
def grpo(
    config: ConfigOpt = None,
    model: ModelOpt = None,
    task: TaskOpt = None,
    num_iterations: Annotated[int | None, typer.Option(help="GRPO iterations.")] = None,
    output_dir: OutOpt = None,
    dataset_seed: Annotated[int | None, typer.Option(help="Training prompt seed.")] = None,
    eval_seed: Annotated[int | None, typer.Option(help="Held-out eval seed.")] = None,
    device: Annotated[str | None, typer.Option(help="auto|cpu|cuda|mps")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto|float32|bfloat16|float16")] = None,
    lora: Annotated[bool | None, typer.Option("--lora/--full", help="LoRA or full FT.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Reuse a non-empty output dir.")] = False,
    set_: SetOpt = None,
) -> None:
    """Train a model with GRPO on a task (see configs/ for recipes)."""
    from smarttuner.grpo.trainer import train_grpo
    from smarttuner.progress import GRPOProgress

    named = {
        "model.name": model,
        "task.name": task,
        "num_iterations": num_iterations,
        "output_dir": str(output_dir) if output_dir else None,
        "task.dataset_seed": dataset_seed,
        "task.eval_seed": eval_seed,
        "model.device": device,
        "model.dtype": dtype,
        "lora.enabled": lora,
        "overwrite": overwrite or None,
    }
    cfg = _run(build_config, GRPOConfig, config, _overrides(set_, named))
    with GRPOProgress(console, cfg.num_iterations) as progress:
        results = _run(train_grpo, cfg, on_step=progress.update)
    _print_summary(results, Path(cfg.output_dir))


def _print_summary(results: dict[str, Any], out: Path) -> None:
    from smarttuner.progress import results_table

    console.print(results_table(results))
    console.print(f"metrics: {out / 'metrics.jsonl'}\nmodel:   {results['model_dir']}")


def _common(model, task, output_dir, dataset_seed, eval_seed, device, dtype, lora, overwrite):
    return {
        "model.name": model,
        "task.name": task,
        "output_dir": str(output_dir) if output_dir else None,
        "task.dataset_seed": dataset_seed,
        "task.eval_seed": eval_seed,
        "model.device": device,
        "model.dtype": dtype,
        "lora.enabled": lora,
        "overwrite": overwrite or None,
    }


DatasetSeedOpt = Annotated[int | None, typer.Option(help="Training prompt seed.")]
EvalSeedOpt = Annotated[int | None, typer.Option(help="Held-out eval seed.")]
DeviceOpt = Annotated[str | None, typer.Option(help="auto|cpu|cuda|mps")]
DtypeOpt = Annotated[str | None, typer.Option(help="auto|float32|bfloat16|float16")]
LoraOpt = Annotated[bool | None, typer.Option("--lora/--full", help="LoRA or full FT.")]
OverwriteOpt = Annotated[bool, typer.Option(help="Reuse a non-empty output dir.")]


@app.command()
def sft(
    config: ConfigOpt = None,
    model: ModelOpt = None,
    task: TaskOpt = None,
    source: Annotated[
        str | None, typer.Option(help="programmatic|self_distill|teacher|jsonl")
    ] = None,
    num_datapoints: Annotated[int | None, typer.Option(help="Training traces.")] = None,
    num_epochs: Annotated[float | None, typer.Option(help="Passes over the traces.")] = None,
    output_dir: OutOpt = None,
    dataset_seed: DatasetSeedOpt = None,
    eval_seed: EvalSeedOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    lora: LoraOpt = None,
    overwrite: OverwriteOpt = False,
    set_: SetOpt = None,
) -> None:
    """Supervised warm-up: teach the <think>/<answer> format (LoRA by default)."""
    from smarttuner.sft import train_sft

    named = _common(
        model, task, output_dir, dataset_seed, eval_seed, device, dtype, lora, overwrite
    )
    named.update(
        {"sft.source": source, "sft.num_datapoints": num_datapoints, "sft.num_epochs": num_epochs}
    )
    cfg = _run(build_config, SFTConfig, config, _overrides(set_, named))
    results = _run(train_sft, cfg, on_epoch=_print_epoch)
    console.print(
        f"metrics: {Path(cfg.output_dir) / 'metrics.jsonl'}\nmodel:   {results['model_dir']}"
    )


def _print_epoch(record: dict[str, Any]) -> None:
    parts = [f"SFT epoch {record['epoch']}: train loss {record['train_loss']:.4f}"]
    for key in ("val_loss", "val_accuracy", "val_format_rate"):
        if key in record:
            parts.append(f"{key.replace('_', ' ')} {record[key]:.3f}")
    console.print("  ".join(parts), highlight=False)


@app.command()
def pipeline(
    config: ConfigOpt = None,
    model: ModelOpt = None,
    task: TaskOpt = None,
    num_iterations: Annotated[int | None, typer.Option(help="GRPO iterations.")] = None,
    output_dir: OutOpt = None,
    dataset_seed: DatasetSeedOpt = None,
    eval_seed: EvalSeedOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    lora: LoraOpt = None,
    run_sft: Annotated[str | None, typer.Option(help="auto|always|never")] = None,
    overwrite: OverwriteOpt = False,
    set_: SetOpt = None,
) -> None:
    """Probe → baseline eval → SFT (when needed) → eval → GRPO → eval → plots."""
    from smarttuner.pipeline import run_pipeline
    from smarttuner.progress import GRPOProgress

    named = _common(
        model, task, output_dir, dataset_seed, eval_seed, device, dtype, lora, overwrite
    )
    named.update({"num_iterations": num_iterations, "run_sft": run_sft})
    cfg = _run(build_config, PipelineConfig, config, _overrides(set_, named))

    def say(message: str) -> None:
        console.print(f"[bold cyan]▶[/] {message}", highlight=False)

    with GRPOProgress(console, cfg.num_iterations) as progress:
        summary = _run(run_pipeline, cfg, say=say, on_step=progress.update, on_epoch=_print_epoch)
    _print_summary(summary, Path(cfg.output_dir) / "grpo")
    console.print(
        f"results: {Path(cfg.output_dir) / 'results'}\nplots:   "
        f"{Path(cfg.output_dir) / 'grpo' / 'plots'}"
    )


@app.command()
def probe(
    model: ModelOpt = "smollm2-135m-instruct",
    task: TaskOpt = "syllogism",
    num_prompts: Annotated[int, typer.Option(help="Prompts to sample.")] = 8,
    k: Annotated[int, typer.Option(help="Samples per prompt.")] = 4,
    max_new_tokens: Annotated[int, typer.Option()] = 200,
    temperature: Annotated[float, typer.Option()] = 0.7,
    dataset_seed: Annotated[int, typer.Option()] = 42,
    device: Annotated[str, typer.Option()] = "auto",
) -> None:
    """Format rate, pass@k and learnable-prompt share: does this model need SFT warm-up?"""
    from smarttuner.inference import probe_warmup

    result, reason = _run(
        probe_warmup,
        model,
        task,
        num_prompts=num_prompts,
        k=k,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        dataset_seed=dataset_seed,
        device=device,
    )
    console.print(result)
    console.print(reason, highlight=False)


@app.command()
def generate(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    model: Annotated[str, typer.Option(help="Trained dir (adapter or full) or model spec.")] = (
        "smollm2-135m-instruct"
    ),
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer.")] = 300,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option()] = 1.0,
    num_samples: Annotated[int, typer.Option(help="Completions to sample.")] = 1,
    system_prompt: Annotated[
        str | None, typer.Option(help="Override the <think>/<answer> system prompt.")
    ] = None,
    device: Annotated[str, typer.Option()] = "auto",
) -> None:
    """Answer a question with a model (reasoning format prompt by default)."""
    from smarttuner.inference import generate_answers

    texts = _run(
        generate_answers,
        model,
        [question],
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        num_samples=num_samples,
        system_prompt=system_prompt,
        device=device,
    )
    for text in texts[0]:
        typer.echo(text)


@app.command("eval")
def eval_(
    model: ModelOpt = "smollm2-135m-instruct",
    task: TaskOpt = "syllogism",
    eval_seed: Annotated[int, typer.Option(help="Held-out seed.")] = 123,
    num_examples: Annotated[int, typer.Option(help="Prompts to score.")] = 100,
    max_new_tokens: Annotated[int, typer.Option()] = 300,
    batch_size: Annotated[int, typer.Option()] = 32,
    output: Annotated[Path | None, typer.Option(help="Write results JSON here.")] = None,
    device: Annotated[str, typer.Option()] = "auto",
) -> None:
    """Accuracy and format compliance of a model on a task's eval seed (greedy)."""
    from smarttuner.inference import evaluate_model

    result = _run(
        evaluate_model,
        model,
        task,
        eval_seed=eval_seed,
        num_examples=num_examples,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        output=output,
        device=device,
    )
    console.print(result)


@app.command()
def plot(run_dir: Annotated[Path, typer.Argument(help="A run output directory.")]) -> None:
    """Draw every figure of a run into RUN_DIR/plots."""
    from smarttuner.plots import plot_run

    paths = _run(plot_run, run_dir)
    for p in paths:
        typer.echo(str(p))


@app.command()
def tasks() -> None:
    """List the registered tasks (any reasoning-gym dataset name also works)."""
    from smarttuner.tasks import list_tasks

    typer.echo("\n".join(list_tasks()))


def main() -> None:
    try:
        app()
    except ConfigError as err:  # raised before a command's own handler (e.g. in callbacks)
        console.print(f"[bold red]error:[/] {err}")
        sys.exit(2)
