"""Tools: reward-model training and the benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from smarttuner.cli.common import (
    ConfigOpt,
    LoraOpt,
    ModelOpt,
    OutOpt,
    OverwriteOpt,
    SetOpt,
    _overrides,
    _run,
    app,
    console,
)
from smarttuner.config import build_config

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
    rollout_repeats: Annotated[
        int, typer.Option(min=1, help="Times each rollout engine is timed (alternating).")
    ] = 2,
    only: Annotated[
        list[str] | None,
        typer.Option(help="Subset of: rollout, smarttuner, smarttuner-bf16, trl (repeatable)."),
    ] = None,
    equal_length: Annotated[
        bool,
        typer.Option(
            help="Equal work: every completion of every system is max-new-tokens long (EOS "
            "held back, no stop at </answer>), so step times compare without sampled lengths."
        ),
    ] = False,
) -> None:
    """Time a GRPO step (broken down), rollout throughput and peak memory; vs TRL if present."""
    from smarttuner.bench import BenchSettings, run_bench
    from smarttuner.bench.report import bench_table

    settings = BenchSettings(
        steps=steps,
        max_new_tokens=max_new_tokens,
        rollout_repeats=rollout_repeats,
        equal_length=equal_length,
    )
    results = _run(
        run_bench,
        settings,
        output,
        only,
        say=lambda m: console.print(f"[bold cyan]▶[/] {m}", highlight=False),
    )
    console.print(bench_table(results))
