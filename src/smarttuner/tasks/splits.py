"""Keep evaluation questions out of the training data.

Questions are compared after normalisation (case folded, whitespace collapsed), so the same
question printed with different spacing still counts as an overlap. Both functions are pure.
"""

from __future__ import annotations

from collections.abc import Iterable

from smarttuner.tasks.base import Example


def normalise_question(question: str) -> str:
    """The question case folded with runs of whitespace collapsed to one space."""
    return " ".join(question.split()).casefold()


def check_disjoint(train: list[Example], eval: list[Example]) -> int:
    """How many eval examples have a question that also appears in `train`."""
    seen = _questions(train)
    return sum(normalise_question(example.question) in seen for example in eval)


def drop_overlap(train: list[Example], eval: list[Example]) -> list[Example]:
    """`train` without the examples whose question appears in `eval`, order kept."""
    held_out = _questions(eval)
    return [example for example in train if normalise_question(example.question) not in held_out]


def _questions(examples: Iterable[Example]) -> set[str]:
    return {normalise_question(example.question) for example in examples}
