"""Traces for propositional_logic (conjunction introduction) and gsm_symbolic (the generator's
worked solution): each is graded full marks by the task's own scorer."""

from __future__ import annotations

import pytest

from smarttuner import formatting
from smarttuner.sft.logic_trace import conjunction, logic_reasoning
from smarttuner.sft.traces import gsm_symbolic_trace, propositional_logic_trace
from smarttuner.tasks import get_task
from smarttuner.tasks.base import Example


def test_conjunction_of_two_premises() -> None:
    reasoning, conclusion = logic_reasoning(["R", "Q"], ["P", "Q", "R", "S"])
    assert conclusion == "(R ∧ Q)"
    assert reasoning == (
        "Premise 1 gives R and premise 2 gives Q. "
        "Both are given as true, so the conjunction follows: (R ∧ Q)."
    )
    assert conjunction("¬P", "(Q → P)") == "(¬P ∧ (Q → P))"


def test_tautological_pairs_are_skipped() -> None:
    premises = ["(P ∨ ¬P)", "(Q → Q)", "P"]
    _, conclusion = logic_reasoning(premises, ["P", "Q"])
    assert conclusion == "((P ∨ ¬P) ∧ P)"  # the first pair is a tautology, the next is not


def test_a_lone_premise_is_joined_with_itself() -> None:
    reasoning, conclusion = logic_reasoning(["P"], ["P"])
    assert conclusion == "(P ∧ P)"
    assert reasoning.startswith("Premise 1 gives P. It is given as true")


def test_only_tautologies_follow_from_tautologies() -> None:
    reasoning, conclusion = logic_reasoning(["(P ∨ ¬P)", "(Q → Q)"], ["P", "Q"])
    assert conclusion == "((P ∨ ¬P) ∧ (Q → Q))"
    assert reasoning.startswith("Every premise is true under every assignment")
    with pytest.raises(ValueError, match="without premises"):
        logic_reasoning([], ["P"])


@pytest.mark.parametrize(
    ("task_name", "writer"),
    [("propositional_logic", propositional_logic_trace), ("gsm_symbolic", gsm_symbolic_trace)],
)
def test_traces_score_full_marks(task_name: str, writer) -> None:
    """Full marks, except propositional items whose premises are all tautologies: nothing
    non-trivial follows from them, and the scorer's 0.25 for a tautology is the maximum."""
    task = get_task(task_name)
    scores = []
    for example in task.examples(42, 150):
        completion = writer(example)
        assert formatting.extract_answer(completion) is not None
        score = task.score(completion, example)
        only_tautologies = "Every premise is true under every assignment" in completion
        assert score == pytest.approx(0.25 if only_tautologies else 1.0), completion
        scores.append(score)
    assert sum(s == pytest.approx(1.0) for s in scores) >= 140


def test_gsm_trace_drops_the_final_line_and_checks_it() -> None:
    cot = "There are 12 x 2 = 24 players.\nIn total 12 + 24 = 36.\n#### 36.0"
    example = Example("q", "36", {"answer_cot": cot})
    assert (
        gsm_symbolic_trace(example)
        == formatting.THINK_OPEN
        + (" There are 12 x 2 = 24 players. In total 12 + 24 = 36. ")
        + formatting.THINK_CLOSE
        + formatting.ANSWER_OPEN
        + " 36 "
        + formatting.ANSWER_CLOSE
    )
    wrong = Example("q", "35", {"answer_cot": cot})
    with pytest.raises(ValueError, match="gold answer"):
        gsm_symbolic_trace(wrong)
