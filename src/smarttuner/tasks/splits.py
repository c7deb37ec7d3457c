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


MAX_CLASSES = 10  # more distinct gold answers than this: not a classification task


def answer_classes(examples: list[Example]) -> dict[str, list[int]]:
    """Gold answer (case-folded) -> indices of its examples."""
    classes: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        classes.setdefault(example.answer.strip().casefold(), []).append(i)
    return classes


def balance_by_answer(examples: list[Example]) -> list[Example]:
    """Interleave the gold-answer classes and keep as many of each as the rarest has, so a
    yes/no task's training prompts are half Yes, half No (a policy cannot win by always
    giving the majority answer). Tasks with more than MAX_CLASSES answers are returned as is."""
    classes = answer_classes(examples)
    if len(classes) < 2 or len(classes) > MAX_CLASSES:
        return list(examples)
    per_class = min(len(idx) for idx in classes.values())
    order = sorted(classes)
    return [examples[classes[c][k]] for k in range(per_class) for c in order]


def balanced_accuracy(correct: list[bool], examples: list[Example]) -> float | None:
    """Mean per-class recall over gold answers; None when the task is not a classification."""
    classes = answer_classes(examples)
    if len(classes) < 2 or len(classes) > MAX_CLASSES:
        return None
    recalls = [sum(correct[i] for i in idx) / len(idx) for idx in classes.values()]
    return sum(recalls) / len(recalls)
