"""Training commands: grpo, sft, pipeline."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from smarttuner.cli.common import (
    ConfigOpt,
    DatasetSeedOpt,
    DeviceOpt,
    DtypeOpt,
    EvalSeedOpt,
    LoraOpt,
    ModelOpt,
    OutOpt,
    OverwriteOpt,
    ResumeOpt,
    SetOpt,
    TaskOpt,
    _common,
    _overrides,
    _print_epoch,
    _print_sft_step,
    _print_summary,
    _run,
    app,
    console,
)
from smarttuner.config import GRPOConfig, PipelineConfig, SFTConfig, build_config

ReportToOpt = Annotated[
    str | None, typer.Option(help="Tracking backends, comma-separated: tensorboard,wandb,trackio.")
]
ShowPlotsOpt = Annotated[bool, typer.Option(help="Update a live figure while training (GUI).")]
SavePlotsOpt = Annotated[bool, typer.Option(help="Write every figure at the end of the run.")]
EngineOpt = Annotated[str | None, typer.Option(help="Rollout engine: auto|fast|hf|vllm.")]
FourBitOpt = Annotated[
    bool | None, typer.Option("--load-in-4bit/--no-load-in-4bit", help="QLoRA (CUDA only).")
]


def _training_overrides(
    report_to: str | None, rollout_engine: str | None, load_in_4bit: bool | None
) -> dict[str, Any]:
    return {
        "report_to": report_to.split(",") if report_to else None,
        "generation.engine": rollout_engine,
        "model.load_in_4bit": load_in_4bit,
    }


@contextlib.contextmanager
def _progress(total: int, show_plots: bool) -> Iterator[Callable[[int, dict[str, Any]], None]]:
    """The per-step callback: progress bar, and a live figure when asked (headless: a warning)."""
    from smarttuner.live_plot import LivePlot
    from smarttuner.progress import GRPOProgress

    live = LivePlot() if show_plots else None
    with GRPOProgress(console, total) as progress:

        def on_step(step: int, record: dict[str, Any]) -> None:
            progress.update(step, record)
            if live is not None:
                live(step, record)

        try:
            yield on_step
        finally:
            if live is not None:
                live.close()


@app.command()
def grpo(
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
    rollout_engine: EngineOpt = None,
    load_in_4bit: FourBitOpt = None,
    report_to: ReportToOpt = None,
    show_plots: ShowPlotsOpt = False,
    save_plots: SavePlotsOpt = False,
    overwrite: OverwriteOpt = False,
    resume: ResumeOpt = False,
    set_: SetOpt = None,
) -> None:
    """Train a model with GRPO on a task (see configs/ for recipes)."""
    from smarttuner.grpo.trainer import train_grpo
    from smarttuner.plots import plot_run_safely

    named = _common(
        model, task, output_dir, dataset_seed, eval_seed, device, dtype, lora, overwrite
    )
    named.update({"num_iterations": num_iterations, "resume": resume or None})
    named.update(_training_overrides(report_to, rollout_engine, load_in_4bit))
    cfg = _run(build_config, GRPOConfig, config, _overrides(set_, named))
    with _progress(cfg.num_iterations, show_plots) as on_step:
        results = _run(train_grpo, cfg, on_step=on_step)
    if save_plots:
        plot_run_safely(Path(cfg.output_dir))
    _print_summary(results, Path(cfg.output_dir))


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
    report_to: ReportToOpt = None,
    overwrite: OverwriteOpt = False,
    set_: SetOpt = None,
) -> None:
    """Supervised warm-up: teach the <think>/<answer> format (LoRA by default)."""
    from smarttuner.sft import train_sft

    named = _common(
        model, task, output_dir, dataset_seed, eval_seed, device, dtype, lora, overwrite
    )
    named.update(
        {
            "sft.source": source,
            "sft.num_datapoints": num_datapoints,
            "sft.num_epochs": num_epochs,
            "report_to": report_to.split(",") if report_to else None,
        }
    )
    cfg = _run(build_config, SFTConfig, config, _overrides(set_, named))
    results = _run(train_sft, cfg, on_epoch=_print_epoch, on_step=_print_sft_step)
    console.print(
        f"metrics: {Path(cfg.output_dir) / 'metrics.jsonl'}\nmodel:   {results['model_dir']}"
    )


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
    rollout_engine: EngineOpt = None,
    load_in_4bit: FourBitOpt = None,
    report_to: ReportToOpt = None,
    show_plots: ShowPlotsOpt = False,
    overwrite: OverwriteOpt = False,
    resume: ResumeOpt = False,
    set_: SetOpt = None,
) -> None:
    """Probe → baseline eval → SFT (when needed) → eval → GRPO → eval → plots."""
    from smarttuner.pipeline import run_pipeline

    # --resume reuses the pipeline's folder; its GRPO stage continues from its checkpoint
    named = _common(
        model, task, output_dir, dataset_seed, eval_seed, device, dtype, lora, overwrite or resume
    )
    named.update({"num_iterations": num_iterations, "run_sft": run_sft, "resume": resume or None})
    named.update(_training_overrides(report_to, rollout_engine, load_in_4bit))
    cfg = _run(build_config, PipelineConfig, config, _overrides(set_, named))

    def say(message: str) -> None:
        console.print(f"[bold cyan]▶[/] {message}", highlight=False)

    with _progress(cfg.num_iterations, show_plots) as on_step:
        summary = _run(
            run_pipeline,
            cfg,
            say=say,
            on_step=on_step,
            on_epoch=_print_epoch,
            on_sft_step=_print_sft_step,
        )
    _print_summary(summary, Path(cfg.output_dir) / "grpo")
    console.print(
        f"results: {Path(cfg.output_dir) / 'results'}\nplots:   "
        f"{Path(cfg.output_dir) / 'grpo' / 'plots'}"
    )
