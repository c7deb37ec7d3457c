"""What a person sees while a run goes: a rich progress bar, one line per iteration with the
numbers that matter, a plain-language health note, and the before/after table at the end."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table


@dataclass(frozen=True)
class HealthThresholds:
    """When a GRPO step earns a plain-language warning (display only; training ignores them)."""

    flat_groups_most: float = 0.75  # share of groups with equal rewards that is "most"
    truncated: float = 0.5  # share of completions cut at max_new_tokens
    kl_large: float = 1.0  # KL (k3, per token) that is far from the reference
    kl_rise_factor: float = 2.0  # KL this many times its recent mean is "rising fast"
    kl_rise_floor: float = 0.05  # ... once it is at least this large (tiny KLs are noise)
    kl_window: int = 5  # steps of KL history the rise is measured against
    clip: float = 0.3  # share of tokens clipped by the PPO ratio


def _value(record: dict[str, Any], key: str) -> float | None:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _kl_rising(kl: float | None, history: Sequence[float], t: HealthThresholds) -> str | None:
    if kl is None or not math.isfinite(kl) or len(history) < 3 or kl < t.kl_rise_floor:
        return None
    recent = list(history)[-t.kl_window :]
    before = sum(recent) / len(recent)
    if kl < t.kl_rise_factor * before:
        return None
    return (
        f"KL rising fast ({before:.3f} → {kl:.3f} over the last {len(recent)} steps) — "
        "lower the learning rate or raise beta"
    )


def health_notes(
    record: dict[str, Any],
    kl_history: Sequence[float] = (),
    thresholds: HealthThresholds = HealthThresholds(),
) -> list[str]:
    """Plain-language notes on what is wrong with a GRPO step, most serious first.

    `kl_history` holds the KL of the steps before this one (for "KL rising fast")."""
    t, notes = thresholds, []
    loss = _value(record, "loss")
    if loss is not None and not math.isfinite(loss):
        notes.append("the loss is not finite: the update was skipped — lower the learning rate")
    flat = _value(record, "zero_std_fraction")
    if flat is not None and flat >= 1.0:
        fmt = _value(record, "format_rate")
        remedy = (
            "consider SFT warm-up or a higher temperature"
            if fmt is None or fmt < 0.5
            else "every group was all right or all wrong — raise the temperature or G, or use "
            "harder prompts"
        )
        notes.append(f"all groups had equal rewards: no learning signal — {remedy}")
    elif flat is not None and flat >= t.flat_groups_most:
        notes.append(
            f"{flat:.0%} of groups had equal rewards: little learning signal — a higher "
            "temperature or more generations per prompt would help"
        )
    if _value(record, "format_rate") == 0.0:
        notes.append("no completion followed the <think>/<answer> format — SFT warm-up teaches it")
    truncated = _value(record, "truncated_fraction")
    if truncated is not None and truncated > t.truncated:
        notes.append(
            f"completions truncated at max_new_tokens ({truncated:.0%}) — raise it or teach "
            "shorter answers"
        )
    kl = _value(record, "kl")
    if kl is not None and kl > t.kl_large:
        notes.append("KL to the reference is large — lower the learning rate or raise beta")
    elif rising := _kl_rising(kl, kl_history, t):
        notes.append(rising)
    clip = _value(record, "clip_fraction")
    if clip is not None and clip > t.clip:
        notes.append(
            "many tokens hit the PPO clip — the policy moves fast; lower the learning rate"
        )
    return notes


def health_note(record: dict[str, Any]) -> str | None:
    """The most serious note on a GRPO step (no history), or None when nothing is wrong."""
    notes = health_notes(record)
    return notes[0] if notes else None


@dataclass
class HealthMonitor:
    """The history a health check needs across steps (the KL of recent GRPO steps)."""

    thresholds: HealthThresholds = field(default_factory=HealthThresholds)
    kl_history: deque[float] = field(default_factory=lambda: deque(maxlen=32))

    def check(self, record: dict[str, Any]) -> list[str]:
        """Notes for this GRPO step; then remembers its KL. Other phases get no notes."""
        if record.get("phase") != "grpo":
            return []
        notes = health_notes(record, self.kl_history, self.thresholds)
        kl = _value(record, "kl")
        if kl is not None and math.isfinite(kl):
            self.kl_history.append(kl)
        return notes


def memory_text(record: dict[str, Any]) -> str:
    """ "  RSS 3.1 GB (peak 4.2)" from a record's memory fields, or "" without them."""
    if "rss_mb" not in record:
        return ""
    return f"  RSS {record['rss_mb'] / 1024:.1f} GB (peak {record['peak_rss_mb'] / 1024:.1f})"


def sft_step_due(step: int, total: int, lines: int = 20) -> bool:
    """Whether SFT step `step` of `total` gets a printed line: the first, the last, and about
    `lines` evenly spaced between (an SFT epoch can run for an hour without an epoch line)."""
    return step == 1 or step == total or step % max(1, total // lines) == 0


def sft_step_line(record: dict[str, Any]) -> str:
    """ "SFT step 50/500 (epoch 1): loss 0.4123  3.1 s/step  ~23 min left of training", and the
    memory (`memory_text`) when the record has it."""
    step, total = record["step"], record["total_steps"]
    per_step = record["elapsed_seconds"] / step
    left = per_step * (total - step)
    eta = f"~{left / 60:.0f} min left" if left >= 90 else f"~{left:.0f} s left"
    return (
        f"SFT step {step}/{total} (epoch {record['epoch']}): loss {record['loss']:.4f}  "
        f"{per_step:.1f} s/step  {eta} of training{memory_text(record)}"
    )


def step_line(step: int, record: dict[str, Any], notes: list[str] | None = None) -> str:
    """One printed line per step; `notes` (default: `health_notes(record)`) go on a second line."""
    if record.get("phase") == "eval":
        balanced = record.get("balanced_accuracy")
        return (
            f"eval @ {step}: accuracy {record['accuracy']:.3f}  "
            + (f"balanced {balanced:.3f}  " if balanced is not None else "")
            + f"format {record['format_rate']:.3f}  length {record['mean_length']:.0f}"
        )
    line = (
        f"iter {step}: reward {record['reward_mean']:.3f}±{record['reward_std']:.3f}  "
        f"acc {record['accuracy']:.2f}  fmt {record['format_rate']:.2f}  "
        f"loss {record.get('loss', float('nan')):+.4f}  kl {record.get('kl', 0.0):.4f}  "
        f"zero-std {record['zero_std_fraction']:.2f}  len {record['completion_length']:.0f}  "
        f"{record['tokens_per_second']:.0f} tok/s  {record['step_seconds']:.1f}s"
        + (f"  {rounds:.0f} batches" if (rounds := record.get("sampling_rounds", 1)) > 1 else "")
        + memory_text(record)
    )
    notes = health_notes(record) if notes is None else notes
    return line + (f"\n  [yellow]⚠ {escape(' · '.join(notes))}[/]" if notes else "")


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
        self.health = HealthMonitor()

    def __enter__(self) -> GRPOProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def update(self, step: int, record: dict[str, Any]) -> None:
        notes = self.health.check(record)
        self.progress.console.print(step_line(step, record, notes), highlight=False)
        if record.get("phase") == "grpo":
            self.progress.update(
                self.task_id, completed=step, description=f"reward {record['reward_mean']:.3f}"
            )


STAGE_LABELS = {"baseline": "baseline", "after_sft": "after SFT", "final": "final"}
TABLE_METRICS = ("accuracy", "balanced_accuracy", "format_rate", "mean_length")


def _table_metrics(blocks: list[dict[str, Any]]) -> list[str]:
    """accuracy, format rate, mean length, then any pass@k the stages hold."""
    extra = sorted(
        {k for b in blocks for k in b if k.startswith("pass@")}, key=lambda k: int(k[5:])
    )
    return [m for m in (*TABLE_METRICS, *extra) if any(m in b for b in blocks)]


def results_table(results: dict[str, Any]) -> Table:
    """Baseline vs final (and after-SFT when present) for accuracy, format rate, length (and
    pass@k when evaluated), with the change from baseline to final."""
    stages = [s for s in STAGE_LABELS if isinstance(results.get(s), dict)]
    blocks = [results[s] for s in stages]
    table = Table(title=f"{results.get('task')} · {results.get('model')}")
    table.add_column("metric")
    for stage in stages:
        label = results.get("labels", {}).get(stage, STAGE_LABELS[stage])
        table.add_column(escape(str(label)), justify="right")
    both = "baseline" in stages and "final" in stages
    if both:
        table.add_column("change", justify="right")
    for metric in _table_metrics(blocks):
        values = [b.get(metric) for b in blocks]
        row = [metric] + ["—" if v is None else f"{v:.3f}" for v in values]
        if both:
            before, after = results["baseline"].get(metric), results["final"].get(metric)
            row.append("—" if before is None or after is None else f"{after - before:+.3f}")
        table.add_row(*row)
    return table
