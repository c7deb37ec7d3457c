"""GLUE examples from local TSV/CSV files or, when online, from `datasets` (`nyu-mll/glue`).

Local files follow GLUE's own layout: `DIR/CoLA/dev.tsv`, `DIR/STS-B/dev.tsv`,
`DIR/MRPC/dev.tsv`, `DIR/RTE/dev.tsv`, `DIR/WNLI/dev.tsv` (the `validation` split is `dev`;
`.csv` works too). Columns are read by their GLUE header names (`sentence1`, `sentence2`,
`label`, STS-B's `score`, MRPC's `Quality` / `#1 String` / `#2 String`) or by the column
names of a `datasets` export (`sentence`, `sentence1`, `sentence2`, `label`); CoLA's header-less
`dev.tsv` (source, label, original mark, sentence) is read by position. TSV files are read
without quote handling, as GLUE's own loaders do (its sentences contain bare quotes).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smarttuner.evaluate.glue import GlueTask

SPLIT_FILES = {"validation": "dev", "train": "train", "test": "test"}
_TEXT_A = ("sentence", "sentence1", "#1 string", "question1", "premise")
_TEXT_B = ("sentence2", "#2 string", "question2", "hypothesis")
_LABEL = ("label", "score", "quality", "gold_label")


@dataclass(frozen=True)
class GlueExample:
    idx: int
    text_a: str
    text_b: str | None
    label: float  # class index for classification tasks, similarity score for STS-B


def local_candidates(task: GlueTask, data_dir: Path, split: str) -> list[Path]:
    stem = SPLIT_FILES.get(split, split)
    folders = dict.fromkeys((task.folder, task.name, task.hf_config))
    return [data_dir / f / f"{stem}.{ext}" for f in folders for ext in ("tsv", "csv")]


def _read_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        if path.suffix == ".tsv":
            reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            reader = csv.reader(handle)
        return [row for row in reader if any(cell.strip() for cell in row)]


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    return next((lowered.index(n) for n in names if n in lowered), None)


def parse_rows(task: GlueTask, rows: list[list[str]], source: str) -> list[GlueExample]:
    """Rows of a GLUE file (header first, or CoLA's positional layout) -> labelled examples."""
    if not rows:
        raise ValueError(f"GLUE file {source} is empty")
    header = rows[0]
    a, b, y = _column(header, _TEXT_A), _column(header, _TEXT_B), _column(header, _LABEL)
    if a is not None and y is not None:
        body = rows[1:]
    elif task.positional is not None and a is None:
        a, b, y = task.positional
        body = rows
    else:
        raise ValueError(
            f"GLUE file {source} has no label column: header {header} (expected one of "
            f"{', '.join(_LABEL)})"
        )
    if task.pair and b is None:
        raise ValueError(f"GLUE file {source} for {task.name} has no second-sentence column")
    examples = []
    for number, row in enumerate(body):
        if max(a, y, b if b is not None else 0) >= len(row):
            raise ValueError(f"GLUE file {source}: row {number + 1} has {len(row)} columns")
        label = task.parse_label(row[y])
        if label is None:  # an unlabelled (test) row
            continue
        text_b = row[b] if task.pair and b is not None else None
        examples.append(GlueExample(len(examples), row[a], text_b, label))
    if not examples:
        raise ValueError(f"GLUE file {source} holds no labelled rows")
    return examples


def load_local(task: GlueTask, data_dir: Path, split: str) -> list[GlueExample]:
    for path in local_candidates(task, data_dir, split):
        if path.is_file():
            return parse_rows(task, _read_rows(path), str(path))
    tried = ", ".join(str(p) for p in local_candidates(task, data_dir, split))
    raise FileNotFoundError(f"no {task.name} {split} file in {data_dir} (looked for {tried})")


def load_hub(task: GlueTask, split: str) -> list[GlueExample]:
    """`datasets.load_dataset("nyu-mll/glue", config, split=split)` (needs the package and the
    Hugging Face Hub)."""
    try:
        import datasets
    except ImportError:
        raise ValueError(
            f"GLUE {task.name}: no --glue-dir given and the datasets package is not installed; "
            "pass --glue-dir DIR with GLUE's TSV files (data/glue has samples) or "
            "pip install datasets (needs internet)"
        ) from None
    try:
        rows = datasets.load_dataset("nyu-mll/glue", task.hf_config, split=split)
    except Exception as err:
        raise ValueError(
            f"GLUE {task.name}: loading nyu-mll/glue from the Hugging Face Hub failed ({err}); "
            "offline, pass --glue-dir DIR with GLUE's TSV files"
        ) from None
    examples = []
    for row in rows:
        label = task.parse_label(str(row["label"]))
        if label is None:
            continue
        text_a = row.get("sentence", row.get("sentence1"))
        examples.append(GlueExample(len(examples), text_a, row.get("sentence2"), label))
    return examples


def load_glue(
    task: GlueTask,
    data_dir: Path | None = None,
    split: str = "validation",
    max_samples: int | None = None,
) -> list[GlueExample]:
    """The first `max_samples` labelled examples of `split`: local files when `data_dir` is
    given, else the Hugging Face Hub through `datasets`."""
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    examples = load_local(task, Path(data_dir), split) if data_dir else load_hub(task, split)
    return examples[:max_samples] if max_samples else examples
