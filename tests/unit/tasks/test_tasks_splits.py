"""Train/eval disjointness helpers."""

from __future__ import annotations

from smarttuner.tasks import Example
from smarttuner.tasks.splits import check_disjoint, drop_overlap, normalise_question


def ex(question: str) -> Example:
    return Example(question=question, answer="0")


def test_normalise_question_folds_case_and_whitespace() -> None:
    assert normalise_question("  What is\n 2 +  2? ") == normalise_question("what is 2 + 2?")


def test_check_disjoint_counts_eval_questions_seen_in_train() -> None:
    train = [ex("What is 1 + 1?"), ex("What is 2 + 2?"), ex("What is 3 + 3?")]
    evaluation = [ex("what is  2 + 2?"), ex("What is 4 + 4?"), ex("WHAT IS 3 + 3?")]
    assert check_disjoint(train, evaluation) == 2
    assert check_disjoint(train, [ex("What is 9 + 9?")]) == 0
    assert check_disjoint([], evaluation) == 0


def test_drop_overlap_keeps_order_and_removes_every_copy() -> None:
    train = [ex("a"), ex("B"), ex("c"), ex("b ")]
    evaluation = [ex("b"), ex("z")]
    kept = drop_overlap(train, evaluation)
    assert [e.question for e in kept] == ["a", "c"]
    assert check_disjoint(kept, evaluation) == 0
    assert len(train) == 4  # inputs untouched
