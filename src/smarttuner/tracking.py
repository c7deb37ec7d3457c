"""Experiment tracking: `metrics.jsonl` always (one JSON object per line, flushed at once, so a
crash loses nothing already logged), plus sample completions in `completions.jsonl`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
COMPLETIONS_FILE = "completions.jsonl"


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


class JsonlWriter:
    """Append-only JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(_clean(record)) + "\n")


class Tracker:
    """Where a run's numbers go. Only the metrics file for now; other backends plug in here."""

    def __init__(self, output_dir: Path) -> None:
        self.metrics = JsonlWriter(output_dir / METRICS_FILE)
        self.completions = JsonlWriter(output_dir / COMPLETIONS_FILE)

    def log(self, record: dict[str, Any]) -> None:
        self.metrics.write(record)

    def log_completions(self, step: int, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.completions.write({"step": step, **row})
