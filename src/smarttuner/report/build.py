"""`smarttuner report RUN`: one self-contained HTML page for a run.

The page holds the run's figures (drawn with `plots.plot_run` when `plots/` is empty), the
before/after table from `results.json`, the plain-language health notes of every GRPO step,
a browser of the sample completions in `completions.jsonl` (by step, with rewards per
component and advantages) and the resolved config. RUN may be a single run (sft or grpo) or a
pipeline folder whose `sft/` and `grpo/` sub-folders are its stages.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from smarttuner.plots import RESULTS_FILENAME, plot_run, read_metrics
from smarttuner.progress import HealthMonitor
from smarttuner.report import sections
from smarttuner.report.runs import run_stages
from smarttuner.tracking import COMPLETIONS_FILE, METRICS_FILE

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
CONFIG_FILES = ("pipeline_config.yaml", "config.yaml")
FIRST_FIGURES = (
    "grpo_reward.png",
    "grpo_accuracy.png",
    "before_after.png",
    "grpo_reward_components.png",
    "grpo_loss.png",
    "grpo_kl.png",
    "sft_loss.png",
    "sft_val_metrics.png",
)
_FACT_KEYS = (
    "model",
    "task",
    "iterations",
    "optimizer_steps",
    "train_seconds",
    "total_seconds",
    "train_size",
    "eval_size",
    "sft_ran",
    "model_dir",
)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        log.warning("skipping %s: not valid JSON (%s)", path, err)
        return None
    return data if isinstance(data, dict) else None


def read_completions(path: Path) -> list[dict[str, Any]]:
    """The rows of a completions.jsonl (corrupt lines skipped); [] when the file is absent."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def select_steps(rows: list[dict[str, Any]], max_rows: int) -> list[dict[str, Any]]:
    """At most about `max_rows` rows, whole steps only, spread evenly over the run with the
    first and the last logged step always kept."""
    steps = sorted({r.get("step") for r in rows if isinstance(r.get("step"), int)})
    if len(rows) <= max_rows or len(steps) <= 2:
        return rows
    per_step = len(rows) / len(steps)
    keep_n = max(2, int(max_rows // per_step))
    if keep_n >= len(steps):
        return rows
    picks = {steps[round(i * (len(steps) - 1) / (keep_n - 1))] for i in range(keep_n)}
    return [r for r in rows if r.get("step") in picks]


def _figure_order(path: Path) -> tuple[int, str]:
    """The figures that answer "is it learning?" first, then the rest by name."""
    first = FIRST_FIGURES.index(path.name) if path.name in FIRST_FIGURES else len(FIRST_FIGURES)
    return first, path.name


def _stage_plots(stage: Path) -> list[Path]:
    plots = list((stage / "plots").glob("*.png"))
    if not plots:
        try:
            plots = plot_run(stage)
        except Exception as err:  # the report still shows everything else
            log.warning("could not draw the plots of %s: %s", stage, err)
    return sorted(plots, key=_figure_order)


def _health(records: list[dict[str, Any]]) -> tuple[list[tuple[int, list[str]]], int]:
    monitor, notes, n = HealthMonitor(), [], 0
    for record in records:
        if record.get("phase") != "grpo":
            continue
        n += 1
        if lines := monitor.check(record):
            notes.append((int(record.get("step", n)), lines))
    return notes, n


def _facts(run_dir: Path, results: dict[str, Any] | None) -> dict[str, Any]:
    facts: dict[str, Any] = {"run": str(run_dir)}
    for key in _FACT_KEYS:
        value = (results or {}).get(key)
        if value is None:
            continue
        if isinstance(value, float) and math.isfinite(value) and key.endswith("seconds"):
            value = f"{value:.0f} s"
        facts[key.replace("_", " ")] = value
    return facts


def build_report(run_dir: Path, max_completions: int = 2000) -> str:
    """The HTML page of the run in `run_dir` (see the module docstring)."""
    run_dir = Path(run_dir)
    stages = run_stages(run_dir)
    results = _read_json(run_dir / RESULTS_FILENAME)
    if results is None:
        results = next(
            (r for s in reversed(stages) if (r := _read_json(s / RESULTS_FILENAME))), None
        )
    configs = [
        (str(path.relative_to(run_dir)), path.read_text(encoding="utf-8"))
        for folder in dict.fromkeys([run_dir, *stages])
        for name in CONFIG_FILES
        if (path := folder / name).is_file()
    ]
    records = [r for s in stages for r in read_metrics(s / METRICS_FILE)]
    notes, n_steps = _health(records)
    all_rows = [r for s in stages for r in read_completions(s / COMPLETIONS_FILE)]
    rows = select_steps(all_rows, max_completions)
    steps = sorted({r.get("step") for r in rows if isinstance(r.get("step"), int)})
    total_steps = len({r.get("step") for r in all_rows})
    plot_stages = [
        (stage.name if stage != run_dir else "", _stage_plots(stage)) for stage in stages
    ]
    title = f"SmartTuner report · {run_dir.resolve().name}"
    body = "".join(
        [
            sections.header(title, _facts(run_dir, results)),
            sections.results_section(results),
            sections.health_section(notes, n_steps),
            sections.plots_section(plot_stages),
            sections.completions_section(
                rows, total_steps, len(all_rows), str(steps[-1]) if steps else "all"
            ),
            sections.config_section(configs),
        ]
    )
    return sections.page(title, body)


def write_report(run_dir: Path, output: Path | None = None, max_completions: int = 2000) -> Path:
    """Write the report of `run_dir` to `output` (default `<run_dir>/report.html`)."""
    run_dir = Path(run_dir)
    output = Path(output) if output is not None else run_dir / REPORT_FILE
    html = build_report(run_dir, max_completions)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(html, encoding="utf-8")
    log.info("wrote %s (%.1f MB)", output, len(html) / 1e6)
    return output
