"""Experiment tracking through one interface, `Tracker`.

- `metrics.jsonl` always: one JSON object per line, flushed at once, so a crash loses nothing
  already logged. Sample completions go to `completions.jsonl`.
- TensorBoard event files under `<output_dir>/tensorboard/` when `report_to` names
  `tensorboard`; trackio and Weights & Biases runs when it names `trackio` / `wandb`.

The optional backends are imported only when asked for; one that is asked for but not
installed is an error naming the package and the extra that installs it, raised when the
Tracker is built (before any training). Only scalars go to the optional backends as scalars:
per-completion lists (`rewards`, `advantages`) become histograms, strings are skipped.

A backend that fails while the run is going (a network hiccup for W&B, a full disk for
TensorBoard) is switched off with one warning: `metrics.jsonl` stays the record of truth and a
tracking problem never costs a training run.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
COMPLETIONS_FILE = "completions.jsonl"
TENSORBOARD_DIR = "tensorboard"
DEFAULT_PROJECT = "smarttuner"
# Keys of a metrics record that are coordinates or labels, never plotted as metrics.
_NON_METRIC_KEYS = frozenset({"step", "phase", "split"})
# Record fields (prefixes) that measure the machine, not the run: time, speed and memory. Two
# runs that did the same thing (one of them resumed from a checkpoint, say) differ only there.
MACHINE_FIELDS = (
    "time/",
    "step_seconds",
    "elapsed_seconds",
    "tokens_per_second",
    "rss_mb",
    "peak_rss_mb",
)
# Completions sent to a dashboard per logging step (completions.jsonl keeps them all).
DASHBOARD_COMPLETIONS = 16


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become None; tensors and numpy scalars become Python numbers."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def run_fields(record: dict[str, Any]) -> dict[str, Any]:
    """`record` without its `MACHINE_FIELDS`."""
    return {k: v for k, v in record.items() if not k.startswith(MACHINE_FIELDS)}


class JsonlWriter:
    """Append-only JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(_clean(record)) + "\n")


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def split_record(record: dict[str, Any]) -> tuple[dict[str, float], dict[str, list[float]]]:
    """(scalars, lists) of a metrics record, keyed `<phase>/<key>` (`grpo/loss`, `eval/accuracy`).

    Scalars are finite numbers; lists are all-finite numeric lists (`rewards`, `advantages`).
    Booleans, strings, None/NaN and coordinates (`step`, `phase`, `split`) are dropped.
    """
    record = _clean(record)
    phase = str(record.get("phase", "train"))
    scalars: dict[str, float] = {}
    lists: dict[str, list[float]] = {}
    for key, value in record.items():
        if key in _NON_METRIC_KEYS:
            continue
        name = f"{phase}/{key}"
        if (number := _finite(value)) is not None:
            scalars[name] = number
        elif isinstance(value, list) and value:
            numbers = [_finite(v) for v in value]
            if all(n is not None for n in numbers):
                lists[name] = [n for n in numbers if n is not None]
    return scalars, lists


def record_step(record: dict[str, Any], fallback: int) -> int:
    step = _finite(record.get("step"))
    return int(step) if step is not None else fallback


class Backend(Protocol):
    """An optional destination for a run's numbers (the JSONL files are not one: always on)."""

    def log(self, step: int, scalars: dict[str, float], lists: dict[str, list[float]]) -> None: ...

    def log_completions(self, step: int, rows: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RunInfo:
    """What a backend needs to open its run."""

    output_dir: Path
    run_name: str
    project: str
    config: dict[str, Any] | None


@dataclass(frozen=True)
class BackendSpec:
    name: str
    module: str  # import name that must be importable
    package: str  # pip package name
    factory: Callable[[RunInfo], Backend]


_BACKENDS: dict[str, BackendSpec] = {}


def register_backend(
    name: str, module: str, package: str
) -> Callable[[Callable[[RunInfo], Backend]], Callable[[RunInfo], Backend]]:
    """Register a tracking backend; a second registration of a name is an error."""

    def decorator(factory: Callable[[RunInfo], Backend]) -> Callable[[RunInfo], Backend]:
        if name in _BACKENDS:
            raise ValueError(f"tracking backend {name!r} is already registered")
        _BACKENDS[name] = BackendSpec(name, module, package, factory)
        return factory

    return decorator


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def check_report_to(report_to: Iterable[str] | None) -> list[str]:
    """The backends to open, validated: known names, their packages installed.

    `none` (or an empty list) means metrics.jsonl only. Raises ValueError naming the bad value,
    or the missing package and the extra that installs it.
    """
    names: list[str] = []
    for raw in report_to or []:
        name = raw.strip().lower()
        if name in ("", "none"):
            continue
        if name not in _BACKENDS:
            allowed = ", ".join(["none", *available_backends()])
            raise ValueError(f"unknown report_to backend {raw!r}; allowed: {allowed}")
        spec = _BACKENDS[name]
        if importlib.util.find_spec(spec.module) is None:
            raise ValueError(
                f"report_to {name!r} needs the {spec.package} package, which is not installed: "
                f"pip install 'smarttuner[{name}]'"
            )
        if name not in names:
            names.append(name)
    return names


def _markdown_completions(rows: list[dict[str, Any]]) -> str:
    """Sample completions as Markdown for a dashboard's text panel (code blocks keep raw text)."""
    parts = []
    for row in rows[:DASHBOARD_COMPLETIONS]:
        numbers = [f"reward {row.get('reward', float('nan')):.3f}"]
        if "advantage" in row:
            numbers.append(f"advantage {row['advantage']:+.3f}")
        for name, value in (row.get("components") or {}).items():
            if _finite(value) is not None:
                numbers.append(f"{name} {value:.3f}")
        text = str(row.get("completion", "")).replace("```", "'''")
        parts.append(" · ".join(numbers) + f"\n\n```\n{text}\n```")
    return "\n\n---\n\n".join(parts)


@register_backend("tensorboard", module="tensorboard", package="tensorboard")
class TensorBoardBackend:
    """Event files under `<output_dir>/tensorboard/`; flushed after every call, so a run that
    never reaches `close()` still leaves complete files."""

    def __init__(self, info: RunInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = info.output_dir / TENSORBOARD_DIR
        self.writer = SummaryWriter(log_dir=str(self.logdir))
        if info.config:
            text = json.dumps(_clean(info.config), indent=2).replace("```", "'''")
            self.writer.add_text("config", f"```\n{text}\n```", 0)
            self.writer.flush()

    def log(self, step: int, scalars: dict[str, float], lists: dict[str, list[float]]) -> None:
        import numpy as np

        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
        for tag, values in lists.items():
            self.writer.add_histogram(tag, np.asarray(values, dtype=np.float64), step)
        self.writer.flush()

    def log_completions(self, step: int, rows: list[dict[str, Any]]) -> None:
        self.writer.add_text("completions", _markdown_completions(rows), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _table_rows(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    components = sorted({k for row in rows for k in (row.get("components") or {})})
    columns = ["step", "prompt", "completion", "reward", "advantage", *components]
    data = [
        [
            row.get("step"),
            str(row.get("prompt", "")),
            str(row.get("completion", "")),
            _finite(row.get("reward")),
            _finite(row.get("advantage")),
            *[_finite((row.get("components") or {}).get(c)) for c in components],
        ]
        for row in rows
    ]
    return columns, data


@register_backend("wandb", module="wandb", package="wandb")
class WandbBackend:
    """A Weights & Biases run (online, or offline with WANDB_MODE=offline); files under
    `<output_dir>/wandb/`. The project is $WANDB_PROJECT when set, else `smarttuner`."""

    def __init__(self, info: RunInfo) -> None:
        import os

        import wandb

        self.wandb = wandb
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", info.project),
            name=info.run_name,
            dir=str(info.output_dir),
            config=_clean(info.config) if info.config else None,
        )
        self.run.define_metric("*", step_metric="step")

    def log(self, step: int, scalars: dict[str, float], lists: dict[str, list[float]]) -> None:
        payload: dict[str, Any] = {"step": step, **scalars}
        payload.update({tag: self.wandb.Histogram(values) for tag, values in lists.items()})
        self.run.log(payload)

    def log_completions(self, step: int, rows: list[dict[str, Any]]) -> None:
        columns, data = _table_rows([{"step": step, **r} for r in rows])
        self.run.log({"step": step, "completions": self.wandb.Table(columns=columns, data=data)})

    def close(self) -> None:
        self.run.finish()


@register_backend("trackio", module="trackio", package="trackio")
class TrackioBackend:
    """A trackio run (local dashboard, `trackio show`); project `smarttuner` unless given."""

    def __init__(self, info: RunInfo) -> None:
        import trackio

        self.trackio = trackio
        trackio.init(
            project=info.project,
            name=info.run_name,
            config=_clean(info.config) if info.config else None,
        )

    def log(self, step: int, scalars: dict[str, float], lists: dict[str, list[float]]) -> None:
        payload: dict[str, Any] = dict(scalars)
        histogram = getattr(self.trackio, "Histogram", None)
        if histogram is not None:
            payload.update({tag: histogram(values) for tag, values in lists.items()})
        if payload:
            self.trackio.log(payload, step=step)

    def log_completions(self, step: int, rows: list[dict[str, Any]]) -> None:
        table = getattr(self.trackio, "Table", None)
        if table is None:
            return
        columns, data = _table_rows([{"step": step, **r} for r in rows])
        self.trackio.log({"completions": table(columns=columns, data=data)}, step=step)

    def close(self) -> None:
        self.trackio.finish()


class Tracker:
    """Where a run's numbers go: `metrics.jsonl` and `completions.jsonl` always, plus the
    backends named in `report_to` (`tensorboard`, `trackio`, `wandb`).

    `Tracker(out)` keeps the files only. Use it as a context manager, or call `close()`, to
    finish the dashboard runs (TensorBoard files are complete even without it).
    """

    def __init__(
        self,
        output_dir: Path,
        report_to: Sequence[str] | None = None,
        *,
        run_name: str | None = None,
        project: str = DEFAULT_PROJECT,
        config: dict[str, Any] | None = None,
    ) -> None:
        output_dir = Path(output_dir)
        names = check_report_to(report_to)
        self.metrics = JsonlWriter(output_dir / METRICS_FILE)
        self.completions = JsonlWriter(output_dir / COMPLETIONS_FILE)
        info = RunInfo(output_dir, run_name or output_dir.resolve().name, project, config)
        self.backends: dict[str, Backend] = {}
        for name in names:
            try:
                self.backends[name] = _BACKENDS[name].factory(info)
            except Exception as err:
                self.close()
                raise ValueError(f"report_to {name!r} could not start: {err}") from err
        self._count = 0

    @property
    def report_to(self) -> list[str]:
        return list(self.backends)

    def log(self, record: dict[str, Any]) -> None:
        self.metrics.write(record)
        self._count += 1
        if self.backends:
            scalars, lists = split_record(record)
            step = record_step(record, self._count)
            self._each(lambda b: b.log(step, scalars, lists))

    def log_completions(self, step: int, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.completions.write({"step": step, **row})
        if self.backends and rows:
            clean = _clean(rows)
            self._each(lambda b: b.log_completions(step, clean))

    def _each(self, call: Callable[[Backend], None]) -> None:
        for name, backend in list(self.backends.items()):
            try:
                call(backend)
            except Exception as err:  # tracking must never cost the run its training
                log.warning("tracking backend %s failed (%s); switched off for this run", name, err)
                del self.backends[name]

    def close(self) -> None:
        for name, backend in list(self.backends.items()):
            try:
                backend.close()
            except Exception as err:
                log.warning("closing tracking backend %s failed: %s", name, err)
        self.backends = {}

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
