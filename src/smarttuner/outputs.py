"""The run's output directory: refuse to clobber, write results atomically."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class OutputDirError(FileExistsError):
    """An output directory that holds files and may not be overwritten."""


def prepare_output_dir(path: Path, overwrite: bool, resume: bool = False) -> Path:
    """Create `path`; a non-empty existing directory needs `overwrite` or `resume` (a run that
    continues from its own checkpoint). Checked before any work."""
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"output path {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        raise OutputDirError(
            f"output directory {path} is not empty; pass --overwrite to start over, --resume to "
            "continue its run from a checkpoint, or pick another"
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def removed_if_failed_at_start(path: Path, own_files: tuple[str, ...]) -> Iterator[None]:
    """A failure inside the block that leaves `path` holding only `own_files` (what the run
    wrote before its first stage produced anything) removes them and the directory, when the
    directory was new or empty before: a run stopped by bad input (an unknown task, a missing
    model) leaves nothing that a corrected rerun would refuse to overwrite. Anything else in
    the directory keeps it all."""
    fresh = not path.exists() or (path.is_dir() and not any(path.iterdir()))
    try:
        yield
    except BaseException:
        if fresh and path.is_dir() and {p.name for p in path.iterdir()} <= set(own_files):
            for name in own_files:
                (path / name).unlink(missing_ok=True)
            path.rmdir()
        raise


def reset_run_files(path: Path, names: list[str]) -> None:
    """Remove this run's append-only logs before a fresh (overwriting) run appends to them."""
    for name in names:
        (path / name).unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> Path:
    """Write JSON through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_results(path: Path) -> dict[str, Any]:
    """A results JSON (a run's results.json or `smarttuner eval -o`) as a dict, or a one-line
    error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Results file not found: {path}")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"Results file {path} is not valid JSON: {error}") from error
    if not isinstance(results, dict):
        raise ValueError(f"Results file {path} must hold a JSON object.")
    return results
