"""What a person sees while a run goes: a rich progress bar, one line per iteration with the
numbers that matter, a plain-language health note, and the before/after table at the end."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table


def health_note(record: dict[str, Any]) -> str | None:
    """One sentence on what is wrong with a GRPO step, or None when nothing is."""
    if record.get("zero_std_fraction", 0.0) >= 1.0:
        return (
            "all groups had equal rewards: no learning signal — consider SFT warm-up or a "
            "higher temperature"
        )
    if record.get("truncated_fraction", 0.0) > 0.5:
        return "most completions were cut at max_new_tokens — raise it or teach shorter answers"
    if record.get("kl", 0.0) > 1.0:
        return "KL to the reference is large — lower the learning rate or raise beta"
    if record.get("clip_fraction", 0.0) > 0.3:
        return "many tokens hit the PPO clip — the policy moves fast; lower the learning rate"
    return None


def step_line(step: int, record: dict[str, Any]) -> str:
    if record.get("phase") == "eval":
        return (
            f"eval @ {step}: accuracy {record['accuracy']:.3f}  "
            f"format {record['format_rate']:.3f}  length {record['mean_length']:.0f}"
        )
    line = (
        f"iter {step}: reward {record['reward_mean']:.3f}±{record['reward_std']:.3f}  "
        f"acc {record['accuracy']:.2f}  fmt {record['format_rate']:.2f}  "
        f"loss {record.get('loss', float('nan')):+.4f}  kl {record.get('kl', 0.0):.4f}  "
        f"zero-std {record['zero_std_fraction']:.2f}  len {record['completion_length']:.0f}  "
        f"{record['tokens_per_second']:.0f} tok/s  {record['step_seconds']:.1f}s"
    )
    note = health_note(record)
    return line + (f"\n  [yellow]⚠ {note}[/]" if note else "")


class GRPOProgress:
    """Context manager whose `update(step, record)` is the trainer's per-step callback."""

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]GRPO"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=True,
        )
        self.task_id = self.progress.add_task("", total=total)

    def __enter__(self) -> GRPOProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def update(self, step: int, record: dict[str, Any]) -> None:
        self.progress.console.print(step_line(step, record), highlight=False)
        if record.get("phase") == "grpo":
            self.progress.update(
                self.task_id, completed=step, description=f"reward {record['reward_mean']:.3f}"
            )


def results_table(results: dict[str, Any]) -> Table:
    """Baseline vs final (and after-SFT when present) for accuracy, format rate, length."""
    stages = [s for s in ("baseline", "after_sft", "final") if s in results]
    table = Table(title=f"{results.get('task')} · {results.get('model')}")
    table.add_column("metric")
    for stage in stages:
        table.add_column(stage.replace("_", " "), justify="right")
    if "baseline" in results and "final" in results:
        table.add_column("change", justify="right")
    for metric in ("accuracy", "format_rate", "mean_length"):
        row = [metric] + [f"{results[s].get(metric, float('nan')):.3f}" for s in stages]
        if "baseline" in results and "final" in results:
            row.append(f"{results['final'][metric] - results['baseline'][metric]:+.3f}")
        table.add_row(*row)
    return table
