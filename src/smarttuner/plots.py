"""Every figure of a run, drawn from its `metrics.jsonl` (and `results.json`), saved as PNG.

Figures are built on a bare `matplotlib.figure.Figure` with an Agg canvas attached, so
plotting never touches pyplot's global state, never picks an interactive backend and works
on a headless machine. matplotlib is imported inside the functions that draw, so importing
this module costs nothing.

A metrics line may lack any key: each figure draws the series that are present and a figure
whose series are all absent is skipped. Noisy per-step series (reward, accuracy) get a
trailing moving average drawn over the raw values once there are enough steps.

The window redrawn during training (`--show-plots`) is `smarttuner.live_plot`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smarttuner.outputs import read_results

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

Record = dict[str, Any]

DPI = 200
GRID_ALPHA = 0.3
METRICS_FILENAME = "metrics.jsonl"
RESULTS_FILENAME = "results.json"
PLOTS_DIRNAME = "plots"
# Metrics whose names end like this live in [0, 1]; their panels get a fixed 0..1 y axis.
_RATE_SUFFIXES = ("fraction", "rate", "accuracy")
# (key in a results JSON, legend label), in pipeline order.
STAGES = (("baseline", "baseline"), ("after_sft", "after SFT"), ("final", "final"))


@dataclass(frozen=True)
class _LinePlot:
    """A figure of plain lines: one panel per (y label, metric keys), x = step.

    The phase whose records it draws is the file name's prefix (`grpo_…`, `sft_…`).
    """

    filename: str
    title: str
    panels: tuple[tuple[str, tuple[str, ...]], ...]


_LINE_PLOTS = (
    _LinePlot("grpo_loss.png", "GRPO loss", (("loss", ("loss", "policy_loss")),)),
    _LinePlot("grpo_kl.png", "KL divergence to the reference", (("KL", ("kl",)),)),
    _LinePlot(
        "grpo_clip_fraction.png", "Clipped ratio fraction", (("fraction", ("clip_fraction",)),)
    ),
    _LinePlot(
        "grpo_completion_length.png",
        "Completion length",
        (("tokens", ("completion_length",)), ("fraction", ("truncated_fraction",))),
    ),
    _LinePlot(
        "grpo_zero_std_fraction.png",
        "Groups with zero reward std (no learning signal)",
        (("fraction", ("zero_std_fraction",)),),
    ),
    _LinePlot("grpo_optimizer.png", "Optimizer", (("grad norm", ("grad_norm",)), ("lr", ("lr",)))),
    _LinePlot("sft_loss.png", "SFT loss", (("loss", ("train_loss", "val_loss")),)),
    _LinePlot(
        "sft_val_metrics.png", "SFT validation", (("rate", ("val_accuracy", "val_format_rate")),)
    ),
    _LinePlot("sft_lr.png", "SFT learning rate", (("lr", ("lr",)),)),
)


def read_metrics(path: Path) -> list[Record]:
    """Read a JSON-lines metrics file, skipping blank lines and warning on corrupt ones."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Metrics file not found: {path}")
    records: list[Record] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                logger.warning("Skipping corrupt line %d of %s: %s", number, path, error)
                continue
            if not isinstance(record, dict):
                logger.warning("Skipping line %d of %s: not a JSON object", number, path)
                continue
            records.append(record)
    return records


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average; the first `window - 1` points average what exists so far."""
    if window < 1:
        raise ValueError(f"smooth window must be >= 1, got {window}.")
    out: list[float] = []
    total = 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _smooth_window(n: int) -> int:
    """A window of about a tenth of the series, 1 (no smoothing) for short series."""
    return max(1, min(25, n // 10))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _rows(records: Iterable[Record], *keys: str, x_key: str = "step") -> list[tuple[float, ...]]:
    """(x, value, ...) for each record where x and every key hold a finite number."""
    rows = []
    for record in records:
        values = [_number(record.get(k)) for k in (x_key, *keys)]
        if None not in values:
            rows.append(tuple(v for v in values if v is not None))
    return rows


def _series(records: Iterable[Record], key: str) -> tuple[list[float], list[float]]:
    rows = _rows(records, key)
    return [r[0] for r in rows], [r[1] for r in rows]


def _phase(records: Iterable[Record], phase: str) -> list[Record]:
    return [r for r in records if r.get("phase") == phase]


def _label(key: str) -> str:
    return key.replace("_", " ")


def _new_figure(
    nrows: int = 1, width: float = 7.0, height: float = 4.0
) -> tuple[Figure, list[Axes]]:
    """A Figure with its own Agg canvas (no pyplot) and `nrows` stacked axes sharing x."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height + 2.2 * (nrows - 1)), layout="tight")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, 1, sharex=True, squeeze=False)[:, 0].tolist()
    return fig, axes


def _style(
    ax: Axes,
    ylabel: str,
    xlabel: str | None = "step",
    title: str | None = None,
    grid_axis: str = "both",
) -> None:
    if title:
        ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis=grid_axis, alpha=GRID_ALPHA)
    ax.spines[["top", "right"]].set_visible(False)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _marker(n: int) -> str:
    return "o" if n <= 30 else ""


def _draw_noisy(ax: Axes, xs: list[float], ys: list[float], label: str) -> None:
    """Raw series, plus a bold moving average over it when the series is long enough."""
    window = _smooth_window(len(ys))
    if window == 1:
        ax.plot(xs, ys, marker=_marker(len(ys)), markersize=3, label=label)
        return
    (raw,) = ax.plot(xs, ys, alpha=0.35, linewidth=1, label=f"{label} (raw)")
    ax.plot(
        xs, smooth(ys, window), color=raw.get_color(), linewidth=2, label=f"{label} (avg {window})"
    )


def _line_figure(records: list[Record], spec: _LinePlot) -> Figure | None:
    panels = [
        (ylabel, keys) for ylabel, keys in spec.panels if any(_rows(records, k) for k in keys)
    ]
    if not panels:
        return None
    fig, axes = _new_figure(len(panels))
    for i, (ax, (ylabel, keys)) in enumerate(zip(axes, panels, strict=True)):
        for key in keys:
            xs, ys = _series(records, key)
            if xs:
                ax.plot(xs, ys, marker=_marker(len(xs)), markersize=3, label=_label(key))
        if all(key.endswith(_RATE_SUFFIXES) for key in keys):
            ax.set_ylim(-0.02, 1.02)
        last = i == len(panels) - 1
        _style(ax, ylabel, xlabel="step" if last else None, title=spec.title if i == 0 else None)
    return fig


def _reward_figure(grpo: list[Record]) -> Figure | None:
    xs, means = _series(grpo, "reward_mean")
    if not xs:
        return None
    fig, (ax,) = _new_figure()
    band = _rows(grpo, "reward_mean", "reward_std")
    if band:
        low = [m - s for _, m, s in band]
        high = [m + s for _, m, s in band]
        ax.fill_between([r[0] for r in band], low, high, alpha=0.2, label="± std")
    _draw_noisy(ax, xs, means, "reward mean")
    _style(ax, "reward", title="GRPO reward (mean ± std over completions)")
    return fig


def _reward_component_keys(grpo: list[Record]) -> list[str]:
    keys: dict[str, None] = {}
    for record in grpo:
        for key in record:
            if key.startswith("reward/") and key.endswith("_mean"):
                keys[key] = None
    return list(keys)


def _reward_components_figure(grpo: list[Record]) -> Figure | None:
    """One line per `reward/<name>_mean`, with its std as a light band."""
    keys = [k for k in _reward_component_keys(grpo) if _rows(grpo, k)]
    if not keys:
        return None
    fig, (ax,) = _new_figure()
    for key in keys:
        name = key[len("reward/") : -len("_mean")]
        xs, ys = _series(grpo, key)
        (line,) = ax.plot(xs, ys, marker=_marker(len(xs)), markersize=3, label=name)
        band = _rows(grpo, key, f"reward/{name}_std")
        if band:
            xb = [r[0] for r in band]
            low, high = [m - s for _, m, s in band], [m + s for _, m, s in band]
            ax.fill_between(xb, low, high, color=line.get_color(), alpha=0.15)
    _style(ax, "reward", title="Reward components (mean, ± std band)")
    return fig


_BALANCED = "balanced_accuracy"


def _accuracy_figure(grpo: list[Record], evals: list[Record]) -> Figure | None:
    """Accuracy and format rate: training batches as lines, eval points as markers."""
    panels = [k for k in ("accuracy", "format_rate") if _rows(grpo, k) or _rows(evals, k)]
    if not panels:
        return None
    fig, axes = _new_figure(len(panels))
    splits = sorted({str(r.get("split", "eval")) for r in evals})
    for i, (ax, key) in enumerate(zip(axes, panels, strict=True)):
        xs, ys = _series(grpo, key)
        if xs:
            _draw_noisy(ax, xs, ys, "train batch")
        for split in splits:
            split_evals = [r for r in evals if str(r.get("split", "eval")) == split]
            ex, ey = _series(split_evals, key)
            if ex:
                ax.plot(ex, ey, "o--", markersize=6, linewidth=1, label=split)
            bx, by = _series(split_evals, _BALANCED) if key == "accuracy" else ([], [])
            if bx:  # few-answer tasks: mean per-class recall beside accuracy
                ax.plot(bx, by, "s:", markersize=5, linewidth=1, label=f"{split} (balanced)")
        ax.set_ylim(-0.02, 1.02)
        last = i == len(panels) - 1
        title = "Accuracy and format rate" if i == 0 else None
        _style(ax, _label(key), xlabel="step" if last else None, title=title)
    return fig


def _histogram_figure(grpo: list[Record], key: str, title: str) -> Figure | None:
    """Histograms of a per-completion list (`rewards`, `advantages`): early vs late steps."""
    import numpy as np

    recs = [r for r in grpo if isinstance(r.get(key), list) and r[key]]
    recs = [r for r in recs if all(_number(v) is not None for v in r[key])]
    if not recs:
        return None
    k = max(1, len(recs) // 3)
    groups = [recs] if len(recs) == 1 else [recs[:k], recs[-k:]]
    pooled = [float(v) for r in recs for v in r[key]]
    bins = np.histogram_bin_edges(pooled, bins=min(30, max(5, len(pooled) // 4)))
    fig, (ax,) = _new_figure()
    names = ("all",) if len(groups) == 1 else ("early", "late")
    for group, name in zip(groups, names, strict=True):
        values = [float(v) for r in group for v in r[key]]
        steps = [r.get("step", "?") for r in group]
        span = f"steps {steps[0]}–{steps[-1]}"
        label = span if name == "all" else f"{name}: {span}"
        ax.hist(values, bins=bins, alpha=0.5, density=True, label=label)
    _style(ax, "density", xlabel=_label(key).rstrip("s"), title=title)
    return fig


def _bars(ax: Axes, groups: list[str], values: dict[str, list[float | None]]) -> None:
    """Grouped bars: one group per x tick, one bar per stage, value printed on top."""
    import numpy as np

    x = np.arange(len(groups))
    width = 0.8 / max(1, len(values))
    for i, (stage, vals) in enumerate(values.items()):
        heights = [math.nan if v is None else v for v in vals]
        bars = ax.bar(x + (i - (len(values) - 1) / 2) * width, heights, width, label=stage)
        labels = ["" if v is None else f"{v:.3g}" for v in vals]
        ax.bar_label(bars, labels=labels, fontsize=7, padding=2)
    ax.set_xticks(x, groups, rotation=20 if len(groups) > 3 else 0)
    present = [v for vals in values.values() for v in vals if v is not None]
    if present and all(0 <= v <= 1 for v in present):
        ax.set_ylim(0, 1.1)


def _stage_value(results: Record, stage: str, metric: str) -> float | None:
    block = results.get(stage)
    return _number(block.get(metric)) if isinstance(block, dict) else None


def _stages_present(results: Iterable[Record]) -> list[tuple[str, str]]:
    results = list(results)
    return [
        (key, label) for key, label in STAGES if any(isinstance(r.get(key), dict) for r in results)
    ]


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def build_run_figures(records: list[Record]) -> dict[str, Figure]:
    """Every applicable figure for these metrics records, keyed by PNG file name."""
    grpo, evals = _phase(records, "grpo"), _phase(records, "eval")
    by_phase = {"grpo": grpo, "sft": _phase(records, "sft")}
    figures = {
        "grpo_reward.png": _reward_figure(grpo),
        "grpo_reward_components.png": _reward_components_figure(grpo),
        "grpo_accuracy.png": _accuracy_figure(grpo, evals),
        "grpo_reward_hist.png": _histogram_figure(grpo, "rewards", "Reward per completion"),
        "grpo_advantage_hist.png": _histogram_figure(
            grpo, "advantages", "Advantage per completion"
        ),
    }
    for spec in _LINE_PLOTS:
        figures[spec.filename] = _line_figure(by_phase[spec.filename.split("_")[0]], spec)
    skipped = [name for name, fig in figures.items() if fig is None]
    if skipped:
        logger.debug("No data in the metrics for %s; skipped.", ", ".join(skipped))
    return {name: fig for name, fig in figures.items() if fig is not None}


def plot_run(run_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Draw every figure of a run into `out_dir` (default `<run_dir>/plots/`); return the paths.

    Reads `<run_dir>/metrics.jsonl`; when `<run_dir>/results.json` exists, also draws
    `before_after.png` from it.
    """
    run_dir = Path(run_dir)
    metrics_path = run_dir / METRICS_FILENAME
    if not metrics_path.is_file():
        raise FileNotFoundError(f"No {METRICS_FILENAME} in run directory {run_dir}: {metrics_path}")
    out_dir = Path(out_dir) if out_dir is not None else run_dir / PLOTS_DIRNAME
    figures = build_run_figures(read_metrics(metrics_path))
    paths = [_save(fig, out_dir / name) for name, fig in figures.items()]
    results_path = run_dir / RESULTS_FILENAME
    if results_path.is_file():
        try:
            paths.append(
                plot_before_after(read_results(results_path), out_dir / "before_after.png")
            )
        except ValueError as error:
            logger.debug("Skipping before_after.png: %s", error)
    logger.info("Wrote %d figures to %s", len(paths), out_dir)
    return paths


def plot_comparison(results_files: list[Path], out_path: Path, metric: str = "accuracy") -> Path:
    """Grouped bars of `metric` per results file (baseline / after SFT / final)."""
    if not results_files:
        raise ValueError("plot_comparison needs at least one results file, got none.")
    results = [read_results(p) for p in results_files]
    stages = _stages_present(results)
    values = {label: [_stage_value(r, key, metric) for r in results] for key, label in stages}
    if not any(v is not None for vals in values.values() for v in vals):
        raise ValueError(f"Metric {metric!r} is in no stage of any results file.")
    groups = [
        f"{r.get('task', Path(p).stem)} / {r.get('model', '?')}"
        for r, p in zip(results, results_files, strict=True)
    ]
    fig, (ax,) = _new_figure(width=max(6.0, 1.8 * len(groups)))
    _bars(ax, groups, values)
    _style(
        ax,
        _label(metric),
        xlabel=None,
        title=f"{_label(metric).capitalize()} by run",
        grid_axis="y",
    )
    return _save(fig, Path(out_path))


def plot_before_after(results: dict, out_path: Path) -> Path:
    """Accuracy and format rate of one run: baseline, after SFT (if any) and final."""
    stages = _stages_present([results])
    if not stages:
        allowed = ", ".join(k for k, _ in STAGES)
        raise ValueError(f"Results hold none of the stages {allowed}.")
    metrics = ("accuracy", "format_rate")
    values = {label: [_stage_value(results, key, m) for m in metrics] for key, label in stages}
    fig, (ax,) = _new_figure(width=6.0)
    _bars(ax, [_label(m) for m in metrics], values)
    title = f"{results.get('task', '?')} / {results.get('model', '?')}: before vs after"
    _style(ax, "rate", xlabel=None, title=title, grid_axis="y")
    return _save(fig, Path(out_path))


def plot_run_safely(run_dir: Path) -> list[Path]:
    """`plot_run`, but a failure is a warning and an empty list: a figure must never cost a
    finished run its results (what `--save-plots` calls at the end of training)."""
    try:
        return plot_run(run_dir)
    except Exception as error:
        logger.warning("plots for %s failed: %s", run_dir, error)
        return []


def plot_runs_overlay(run_dirs: list[Path], out_path: Path) -> Path:
    """Several runs on one chart: GRPO reward mean and eval accuracy, one line per run."""
    runs = {Path(d).name or str(d): read_metrics(Path(d) / METRICS_FILENAME) for d in run_dirs}
    if not runs:
        raise ValueError("plot_runs_overlay needs at least one run directory, got none.")
    fig, (reward_ax, acc_ax) = _new_figure(2, width=8.0)
    for name, records in runs.items():
        xs, ys = _series(_phase(records, "grpo"), "reward_mean")
        if xs:
            reward_ax.plot(xs, smooth(ys, _smooth_window(len(ys))), label=name)
        ex, ey = _series(_phase(records, "eval"), "accuracy")
        if ex:
            acc_ax.plot(ex, ey, "o-", markersize=4, label=name)
    if not reward_ax.get_lines() and not acc_ax.get_lines():
        raise ValueError("none of the runs has GRPO rewards or eval accuracy to compare")
    acc_ax.set_ylim(-0.02, 1.02)
    _style(reward_ax, "reward mean", xlabel=None, title="Runs compared")
    _style(acc_ax, "eval accuracy")
    return _save(fig, Path(out_path))
