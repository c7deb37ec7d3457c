"""Finding runs: a run is a folder with a `metrics.jsonl`; a pipeline folder holds several
(`sft/`, `grpo/`) as its stages."""

from __future__ import annotations

from pathlib import Path

from smarttuner.tracking import METRICS_FILE

_SKIP = {"model", "plots", "tensorboard", "wandb", "__pycache__"}


def find_runs(root: Path) -> list[Path]:
    """Every folder under `root` (itself included) that holds a metrics.jsonl, sorted by path;
    model, plot and tracker folders are not searched."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    found: list[Path] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        if (folder / METRICS_FILE).is_file():
            found.append(folder)
        stack.extend(
            child
            for child in folder.iterdir()
            if child.is_dir() and child.name not in _SKIP and not child.name.startswith(".")
        )
    return sorted(found)


def run_stages(run_dir: Path) -> list[Path]:
    """The runs a report covers: the folder itself when it holds metrics.jsonl, else its direct
    sub-folders that do (a pipeline's `sft/` and `grpo/`, in that order)."""
    run_dir = Path(run_dir)
    if (run_dir / METRICS_FILE).is_file():
        return [run_dir]
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no such run folder: {run_dir}")
    order = {"sft": 0, "grpo": 1}
    stages = [c for c in run_dir.iterdir() if c.is_dir() and (c / METRICS_FILE).is_file()]
    if not stages:
        raise FileNotFoundError(
            f"no {METRICS_FILE} in {run_dir} or its sub-folders: is it a SmartTuner run folder?"
        )
    return sorted(stages, key=lambda p: (order.get(p.name, 2), p.name))
