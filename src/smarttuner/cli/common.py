"""What every command shares: the typer app, the console, option types, override parsing and
the one-line error handling."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from smarttuner.config import (
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


def _print_summary(results: dict[str, Any], out: Path) -> None:
    from smarttuner.progress import results_table

    console.print(results_table(results))
    if "paired" in results:
        from smarttuner.evaluate.paired import paired_text

        console.print(paired_text(results["paired"]), highlight=False)
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


def _print_sft_step(record: dict[str, Any]) -> None:
    """About twenty lines over an SFT run: step, loss, speed and time left."""
    from smarttuner.progress import sft_step_due, sft_step_line

    if sft_step_due(record["step"], record["total_steps"]):
        console.print(sft_step_line(record), highlight=False)


def _print_epoch(record: dict[str, Any]) -> None:
    from smarttuner.progress import memory_text

    parts = [f"SFT epoch {record['epoch']}: train loss {record['train_loss']:.4f}"]
    for key in ("val_loss", "val_accuracy", "val_format_rate"):
        if key in record:
            parts.append(f"{key.replace('_', ' ')} {record[key]:.3f}")
    console.print("  ".join(parts) + memory_text(record), highlight=False)
