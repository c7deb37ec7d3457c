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
ResumeOpt = Annotated[
    bool, typer.Option(help="Continue from the newest complete checkpoint in the output dir.")
]


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
    resume: ResumeOpt = False,
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
        "resume": resume or None,
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
    resume: ResumeOpt = False,
    set_: SetOpt = None,
) -> None:
    """Probe → baseline eval → SFT (when needed) → eval → GRPO → eval → plots."""
    from smarttuner.pipeline import run_pipeline
    from smarttuner.progress import GRPOProgress

    # --resume reuses the pipeline's folder; its GRPO stage continues from its checkpoint
    named = _common(
        model, task, output_dir, dataset_seed, eval_seed, device, dtype, lora, overwrite or resume
    )
    named.update({"num_iterations": num_iterations, "run_sft": run_sft, "resume": resume or None})
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
    use_base_model: Annotated[
        bool, typer.Option(help="Evaluate the base model under the adapter dir --model.")
    ] = False,
    compare_to: Annotated[
        str | None, typer.Option(help="A second model: before/after table (it is 'before').")
    ] = None,
    compare_base: Annotated[
        bool, typer.Option(help="Compare the adapter dir --model with its base model.")
    ] = False,
    num_samples: Annotated[
        int, typer.Option(help="Samples per prompt for pass@k (0: greedy only).")
    ] = 0,
    pass_k: Annotated[str, typer.Option(help="k values of pass@k, e.g. 1,4.")] = "1",
    temperature: Annotated[float, typer.Option(help="Sampling temperature for pass@k.")] = 0.7,
    top_p: Annotated[float, typer.Option(help="Nucleus mass for pass@k.")] = 0.95,
    seed: Annotated[int, typer.Option(help="Sampling seed for pass@k.")] = 0,
    glue: Annotated[
        str | None,
        typer.Option(help="GLUE-style evaluation instead: cola,sts-b,mrpc,rte,wnli or all."),
    ] = None,
    glue_dir: Annotated[
        Path | None, typer.Option(help="Folder of GLUE TSV/CSV files (else `datasets`, online).")
    ] = None,
    max_samples: Annotated[int | None, typer.Option(help="GLUE examples per task.")] = None,
    save_predictions: Annotated[
        Path | None, typer.Option(help="Write GLUE predictions as DIR/<task>.json.")
    ] = None,
) -> None:
    """Score a model on a task's eval seed (greedy; pass@k with --num-samples), or on GLUE."""
    if glue is not None:
        _glue_eval(
            model, use_base_model, glue, glue_dir, max_samples, save_predictions, output, device
        )
        return
    from smarttuner.evaluate.harness import EvalOptions, run_evaluation
    from smarttuner.progress import results_table

    try:
        ks = tuple(int(k) for k in pass_k.split(",") if k.strip())
    except ValueError:
        _fail(f"--pass-k must be comma-separated integers such as 1,4, got {pass_k!r}")
    options = _run(
        EvalOptions,
        eval_seed=eval_seed,
        num_examples=num_examples,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        num_samples=num_samples,
        pass_k=ks,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        device=device,
    )
    results = _run(
        run_evaluation,
        model,
        task,
        options,
        compare_to=compare_to,
        use_base_model=use_base_model,
        output=output,
        compare_base=compare_base,
    )
    console.print(results_table(results))
    if output is not None:
        console.print(f"results: {output}")


def _glue_eval(
    model, use_base_model, tasks, glue_dir, max_samples, save_predictions, output, device
):
    from rich.table import Table

    from smarttuner.evaluate.glue import run_glue
    from smarttuner.evaluate.harness import base_model_spec

    spec = _run(base_model_spec, model) if use_base_model else model
    summary = _run(
        run_glue,
        spec,
        tasks,
        data_dir=glue_dir,
        max_samples=max_samples,
        save_predictions=save_predictions,
        device=device,
        output=output,
    )
    table = Table(title=f"GLUE · {spec}")
    for column in ("task", "n", "metrics"):
        table.add_column(column)
    for name, block in summary["tasks"].items():
        metrics = "  ".join(
            f"{k} {'—' if v is None else f'{v:.3f}'}" for k, v in block["metrics"].items()
        )
        table.add_row(name, str(block["n"]), metrics)
    console.print(table)


@app.command()
def plot(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Run folders (or, with --compare, results JSONs or run folders)."),
    ] = None,
    all_runs: Annotated[
        bool, typer.Option("--all", help="Plot every run found under the given folders.")
    ] = False,
    compare: Annotated[
        bool, typer.Option(help="One chart across PATHS: results JSONs or run folders.")
    ] = False,
    metric: Annotated[str, typer.Option(help="Metric of the --compare bars.")] = "accuracy",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Figure folder (or --compare file).")
    ] = None,
) -> None:
    """Draw every figure of a run into RUN/plots; with no argument, pick one from runs/."""
    from smarttuner.plots import plot_comparison, plot_run, plot_runs_overlay
    from smarttuner.report import find_runs

    paths = list(paths or [])
    if compare:
        if not paths:
            _fail("--compare needs results JSON files or run folders")
        if all(p.is_file() for p in paths):
            out = output or paths[0].parent / "plots" / f"compare_{metric}.png"
            typer.echo(str(_run(plot_comparison, paths, out, metric=metric)))
        else:
            out = output or paths[0].parent / "plots" / "compare_runs.png"
            typer.echo(str(_run(plot_runs_overlay, paths, out)))
        return
    if all_runs:
        paths = [run for root in (paths or [Path("runs")]) for run in _run(find_runs, root)]
    elif not paths:
        paths = [_pick_run()]
    for run_dir in paths:
        out_dir = output / run_dir.name if output is not None and len(paths) > 1 else output
        for p in _run(plot_run, run_dir, out_dir):
            typer.echo(str(p))


def _pick_run() -> Path:
    """The interactive mode: list the runs under runs/ (else here) and ask for one."""
    from smarttuner.report import find_runs

    root = Path("runs") if Path("runs").is_dir() else Path(".")
    runs = _run(find_runs, root)
    if not runs:
        _fail(f"no runs (folders with metrics.jsonl) under {root.resolve()}; pass a run folder")
    for number, run in enumerate(runs, start=1):
        console.print(f"{number:3d}  {run}", highlight=False)
    choice = typer.prompt("Plot which run", type=int, default=len(runs))
    if not 1 <= choice <= len(runs):
        _fail(f"pick a number from 1 to {len(runs)}, got {choice}")
    return runs[choice - 1]


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run (or pipeline) output folder.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="HTML file (default RUN/report.html).")
    ] = None,
    max_completions: Annotated[
        int, typer.Option(help="Sample completions shown at most (whole steps, spread out).")
    ] = 2000,
) -> None:
    """One self-contained HTML page: plots, config, before/after table, completions browser."""
    from smarttuner.report import write_report

    typer.echo(str(_run(write_report, run_dir, output, max_completions)))


@app.command()
def tasks() -> None:
    """List the registered tasks (any reasoning-gym dataset name also works)."""
    from smarttuner.tasks import list_tasks

    typer.echo("\n".join(list_tasks()))


reward_model_app = typer.Typer(
    no_args_is_help=True, help="Reward models: train one from preference pairs."
)
app.add_typer(reward_model_app, name="reward-model")


@reward_model_app.command("train")
def reward_model_train(
    config: ConfigOpt = None,
    model: ModelOpt = None,
    source: Annotated[
        str | None, typer.Option(help="task|jsonl|hub: where the preference pairs come from.")
    ] = None,
    path: Annotated[
        Path | None, typer.Option(help="JSONL file of {prompt, chosen, rejected} rows.")
    ] = None,
    task: Annotated[str | None, typer.Option(help="Task that makes pairs (source task).")] = None,
    output_dir: OutOpt = None,
    lora: LoraOpt = None,
    overwrite: OverwriteOpt = False,
    set_: SetOpt = None,
) -> None:
    """Train a reward model (Bradley-Terry) and report held-out pairwise accuracy."""
    from smarttuner.reward_model import RewardModelConfig, train_reward_model

    named = {
        "model.name": model,
        "data.source": source,
        "data.path": str(path) if path else None,
        "data.task": task,
        "output_dir": str(output_dir) if output_dir else None,
        "lora.enabled": lora,
        "overwrite": overwrite or None,
    }
    cfg = _run(build_config, RewardModelConfig, config, _overrides(set_, named))
    results = _run(train_reward_model, cfg, on_step=_print_reward_model_step)
    console.print(
        f"held-out pairwise accuracy {results['val_accuracy']:.3f} "
        f"(before training {results['val_accuracy_before']:.3f})\n"
        f"model:   {results['model_dir']}",
        highlight=False,
    )


def _print_reward_model_step(record: dict[str, Any]) -> None:
    console.print(
        f"step {record['step']}: loss {record['loss']:.4f}  "
        f"batch accuracy {record['batch_accuracy']:.2f}",
        highlight=False,
    )


@app.command()
def bench(
    output: Annotated[
        Path | None, typer.Option(help="Write all measurements as JSON here.")
    ] = None,
    steps: Annotated[int, typer.Option(help="GRPO steps timed per system.")] = 2,
    max_new_tokens: Annotated[int, typer.Option()] = 128,
    only: Annotated[
        list[str] | None,
        typer.Option(help="Subset of: rollout, smarttuner, smarttuner-bf16, trl (repeatable)."),
    ] = None,
) -> None:
    """Time a GRPO step (broken down), rollout throughput and peak memory; vs TRL if present."""
    from smarttuner.bench import BenchSettings, run_bench
    from smarttuner.bench.report import bench_table

    settings = BenchSettings(steps=steps, max_new_tokens=max_new_tokens)
    results = _run(
        run_bench,
        settings,
        output,
        only,
        say=lambda m: console.print(f"[bold cyan]▶[/] {m}", highlight=False),
    )
    console.print(bench_table(results))


def main() -> None:
    try:
        app()
    except ConfigError as err:  # raised before a command's own handler (e.g. in callbacks)
        console.print(f"[bold red]error:[/] {err}")
        sys.exit(2)
