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


def _yes_no(answers: str) -> list:
    from smarttuner.tasks.base import Example

    return [Example(f"q{i}", "Yes" if a == "Y" else "No") for i, a in enumerate(answers)]


def test_balance_by_answer_interleaves_and_caps_at_the_rarest_class() -> None:
    from smarttuner.tasks.splits import balance_by_answer

    examples = _yes_no("YYYNYYNY")  # 6 Yes, 2 No
    balanced = balance_by_answer(examples)
    assert [e.answer for e in balanced] == ["No", "Yes", "No", "Yes"]
    assert [e.question for e in balanced] == ["q3", "q0", "q6", "q1"]  # first of each, in order


def test_balance_by_answer_leaves_open_answers_alone() -> None:
    from smarttuner.tasks.base import Example
    from smarttuner.tasks.splits import balance_by_answer

    numbers = [Example(f"q{i}", str(i)) for i in range(20)]  # 20 distinct answers
    assert balance_by_answer(numbers) == numbers


def test_balanced_accuracy_by_hand() -> None:
    from smarttuner.tasks.splits import balanced_accuracy

    examples = _yes_no("YYYYYYNN")
    always_yes = [e.answer == "Yes" for e in examples]
    # accuracy 6/8 = 0.75, but recall Yes 1.0 and No 0.0: balanced 0.5
    assert balanced_accuracy(always_yes, examples) == 0.5
    correct = [True, True, True, False, False, False, True, False]
    # Yes: 3/6, No: 1/2 -> (0.5 + 0.5) / 2
    assert balanced_accuracy(correct, examples) == 0.5
    assert balanced_accuracy([True], _yes_no("Y")) is None
