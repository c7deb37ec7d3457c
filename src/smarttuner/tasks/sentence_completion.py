"""`sentence_completion`: finish a sentence whose last few tokens were cut off (the CoLA recipe).

Rows come from a CSV or TSV file with a header holding a text column (`text`) and a score column
(`scores`, e.g. CoLA's 0/1 acceptability label or any float). Each sentence is split into a
prompt and a target completion: the target is `completion_tokens` tokens (default 4, the
recipe's short completions) and the prompt keeps at least `min_prompt_tokens` tokens (default
3); sentences too short for both budgets are skipped and counted. The cut is at the end of the
sentence (`cut: end`) or, per example and seeded, anywhere that respects the budgets (`cut:
random`; the target is then the next `completion_tokens` tokens).

Tokens are counted with a tokenizer when `tokenizer` names one (a model folder, hub id or the
bundled alias — use the policy's, so the budgets match `max_new_tokens`), else as
whitespace-separated words. The cut is made in the original text, so prompt + target is the
sentence.

Grading (`score`, used by the `correctness` reward and accuracy): word-level F1 between the
completion's first words and the target; `is_correct` is an exact match of the target's words
(case and punctuation ignored). The CoLA recipe's real rewards are `embedding_similarity`
(reference `answer`, `score_column: score`) and `perplexity`.
"""

from __future__ import annotations

import csv
import logging
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from smarttuner.tasks.base import Example, register_task

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "Continue the text. Reply with only the few words that finish the sentence, "
    "without repeating the given start."
)
_WORD = re.compile(r"[\w']+")


@dataclass(frozen=True)
class SentenceRow:
    text: str
    score: float
    line: int


def read_rows(
    path: Path, text_column: str, score_column: str, min_rows: int = 1
) -> list[SentenceRow]:
    """Rows of a CSV/TSV file (tab-separated for `.tsv`/`.tab`, else comma), validated: the
    file and both columns exist, every text is non-empty, every score a number, and there are
    at least `min_rows` rows. Errors name the file, line and column."""
    if not path.is_file():
        raise FileNotFoundError(f"sentence file not found: {path}")
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        header = reader.fieldnames or []
        missing = [c for c in (text_column, score_column) if c not in header]
        if missing:
            raise ValueError(
                f"{path} has no column(s) {missing}; its header is {header} "
                f"(set params.text_column / params.score_column)"
            )
        rows = []
        for record in reader:
            line = reader.line_num
            text = (record.get(text_column) or "").strip()
            raw_score = (record.get(score_column) or "").strip()
            if not text:
                raise ValueError(f"{path} line {line}: empty {text_column!r}")
            try:
                score = float(raw_score)
            except ValueError:
                raise ValueError(
                    f"{path} line {line}: {score_column!r} must be a number, got {raw_score!r}"
                ) from None
            rows.append(SentenceRow(text, score, line))
    if len(rows) < min_rows:
        raise ValueError(f"{path} has {len(rows)} data rows; at least {min_rows} are needed")
    return rows


def token_starts(text: str, tokenizer: Any | None) -> list[int]:
    """Character offset where each token of `text` starts (words when no tokenizer)."""
    if tokenizer is None:
        return [m.start() for m in re.finditer(r"\S+", text)]
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    starts, last = [], -1
    for start, end in encoded["offset_mapping"]:
        if end > start and start > last:  # skip zero-width and repeated (multi-byte) pieces
            starts.append(start)
            last = start
    return starts


def split_sentence(
    text: str,
    starts: list[int],
    completion_tokens: int,
    min_prompt_tokens: int,
    cut: int | None = None,
) -> tuple[str, str] | None:
    """(prompt, target) with `completion_tokens` target tokens starting at token `cut`
    (default: the last ones) and at least `min_prompt_tokens` before it; None when the
    sentence is too short for both budgets."""
    n = len(starts)
    if n < min_prompt_tokens + completion_tokens:
        return None
    cut = n - completion_tokens if cut is None else cut
    if not min_prompt_tokens <= cut <= n - completion_tokens:
        raise ValueError(f"cut {cut} is outside [{min_prompt_tokens}, {n - completion_tokens}]")
    begin = starts[cut]
    end = starts[cut + completion_tokens] if cut + completion_tokens < n else len(text)
    prompt, target = text[:begin].rstrip(), text[begin:end].rstrip()
    if not prompt or not target.strip():
        return None
    return prompt, target


def words(text: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(text)]


def word_f1(completion: str, target: str) -> float:
    """F1 of the bag of words of the completion's first len(target) words against the target."""
    gold = words(target)
    guess = words(completion)[: max(len(gold), 1)]
    common = sum((Counter(gold) & Counter(guess)).values())
    if not gold or not guess or not common:
        return 0.0
    precision, recall = common / len(guess), common / len(gold)
    return 2 * precision * recall / (precision + recall)


@register_task("sentence_completion")
class SentenceCompletionTask:
    """Sentences from a CSV/TSV file, each cut into a prompt and a short target completion."""

    name = "sentence_completion"

    def __init__(
        self,
        path: str | None = None,
        text_column: str = "text",
        score_column: str = "scores",
        completion_tokens: int = 4,
        min_prompt_tokens: int = 3,
        cut: Literal["end", "random"] = "end",
        tokenizer: str | None = None,
        min_rows: int = 1,
        system_prompt: str = SYSTEM_PROMPT,
    ) -> None:
        if not path:
            raise ValueError("task sentence_completion needs params.path (a CSV or TSV file)")
        if completion_tokens < 1 or min_prompt_tokens < 1:
            raise ValueError(
                f"completion_tokens ({completion_tokens}) and min_prompt_tokens "
                f"({min_prompt_tokens}) must be at least 1"
            )
        if cut not in ("end", "random"):
            raise ValueError(f"cut must be 'end' or 'random', got {cut!r}")
        self.path = Path(path)
        self.completion_tokens, self.min_prompt_tokens = completion_tokens, min_prompt_tokens
        self.cut = cut
        self.system_prompt = system_prompt
        self.tokenizer = _load_tokenizer(tokenizer) if tokenizer else None
        rows = read_rows(self.path, text_column, score_column, min_rows)
        self.rows: list[tuple[SentenceRow, list[int]]] = []
        for row in rows:
            starts = token_starts(row.text, self.tokenizer)
            if split_sentence(row.text, starts, completion_tokens, min_prompt_tokens):
                self.rows.append((row, starts))
        skipped = len(rows) - len(self.rows)
        if not self.rows:
            raise ValueError(
                f"none of the {len(rows)} sentences in {self.path} has the "
                f"{min_prompt_tokens} + {completion_tokens} tokens the budgets need"
            )
        if skipped:
            logger.info("sentence_completion: %d of %d sentences too short", skipped, len(rows))
        self.skipped = skipped

    def __repr__(self) -> str:
        return f"SentenceCompletionTask(path={str(self.path)!r}, rows={len(self.rows)})"

    def examples(self, seed: int, n: int) -> list[Example]:
        """`n` sentences in a seeded order (all of them, with a warning, when `n` is larger)."""
        if n < 0:
            raise ValueError(f"n must be at least 0, got {n}.")
        if n > len(self.rows):
            logger.warning(
                "sentence_completion: %d examples asked for, %s has %d",
                n,
                self.path,
                len(self.rows),
            )
        rng = random.Random(seed)
        order = list(range(len(self.rows)))
        rng.shuffle(order)
        return [self._example(*self.rows[i], rng) for i in order[:n]]

    def score(self, completion: str, example: Example) -> float:
        return word_f1(completion, example.answer)

    def is_correct(self, completion: str, example: Example) -> bool:
        gold = words(example.answer)
        return bool(gold) and words(completion)[: len(gold)] == gold

    def _example(self, row: SentenceRow, starts: list[int], rng: random.Random) -> Example:
        cut = None
        if self.cut == "random":
            cut = rng.randint(self.min_prompt_tokens, len(starts) - self.completion_tokens)
        split = split_sentence(
            row.text, starts, self.completion_tokens, self.min_prompt_tokens, cut
        )
        if split is None:  # a random cut that lands on whitespace only: cut at the end
            split = split_sentence(row.text, starts, self.completion_tokens, self.min_prompt_tokens)
        assert split is not None  # rows that cannot be split at the end were dropped
        prompt, target = split
        return Example(
            question=prompt,
            answer=target.strip(),
            metadata={"text": row.text, "score": row.score, "line": row.line},
        )


def _load_tokenizer(spec: str) -> Any:
    from smarttuner.models import load_tokenizer, resolve_model_path

    return load_tokenizer(resolve_model_path(spec))
