"""The built-in arithmetic task: deterministic generation and the graded reward."""

from __future__ import annotations

import pytest

from smarttuner.tasks import Example, Task
from smarttuner.tasks.arithmetic import ArithmeticTask

GOLD = Example(
    question="Calculate (3 + 4) * 2. Give the final answer as a single integer.", answer="14"
)


def strict(answer: str) -> str:
    return f"<think>3 + 4 = 7, 7 * 2 = 14</think><answer>{answer}</answer>"


def sloppy(answer: str) -> str:
    return f"The answer is <answer>{answer}</answer>"


def test_is_a_task() -> None:
    assert isinstance(ArithmeticTask(), Task)


def test_same_seed_same_examples_and_different_seeds_differ() -> None:
    task = ArithmeticTask()
    assert task.examples(seed=3, n=20) == task.examples(seed=3, n=20)
    assert task.examples(seed=3, n=20) != task.examples(seed=4, n=20)
    assert task.examples(seed=3, n=5) == task.examples(seed=3, n=20)[:5]


def test_examples_are_consistent_with_their_metadata() -> None:
    task = ArithmeticTask(min_value=2, max_value=9, ops=("+", "*"))
    for example in task.examples(seed=0, n=50):
        m = example.metadata
        assert 2 <= min(m["a"], m["b"], m["c"]) and max(m["a"], m["b"], m["c"]) <= 9
        assert {m["op1"], m["op2"]} <= {"+", "*"}
        assert m["intermediate"] == eval(f"{m['a']} {m['op1']} {m['b']}")
        assert m["result"] == eval(f"{m['intermediate']} {m['op2']} {m['c']}")
        assert example.answer == str(m["result"])
        assert f"({m['a']} {m['op1']} {m['b']}) {m['op2']} {m['c']}" in example.question


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (strict("14"), 1.0),  # 0.2 format + 0.2 within one + 0.6 exact
        (strict("14.0"), 1.0),  # same value, lenient parse
        (strict("= 14"), 1.0),
        (strict("15"), 0.4),  # 0.2 format + 0.2 within one
        (strict("13"), 0.4),
        (strict("16"), 0.2),  # format only: two away
        (strict("fourteen"), 0.2),  # format only: not a number
        (sloppy("14"), 0.8),  # 0.2 within one + 0.6 exact, no format
        (sloppy("15"), 0.2),  # within one only
        (sloppy("99"), 0.0),
        ("14", 0.0),  # no answer tag at all
        ("<think>14</think>", 0.0),
    ],
)
def test_graded_score(completion: str, expected: float) -> None:
    assert ArithmeticTask().score(completion, GOLD) == pytest.approx(expected)


def test_negative_decimal_and_comma_answers() -> None:
    task = ArithmeticTask()
    negative = Example(question="Calculate (2 - 9) * 1.", answer="-7")
    assert task.is_correct(strict("-7"), negative)
    assert task.score(strict("-7"), negative) == pytest.approx(1.0)
    assert task.score(strict("-6.5"), negative) == pytest.approx(0.4)  # within one, not exact
    big = Example(question="Calculate (20 * 20) * 20.", answer="8000")
    assert task.is_correct(strict("8,000"), big)
    assert not task.is_correct(strict("8,001"), big)


def test_is_correct_needs_an_exact_answer_not_a_strict_format() -> None:
    task = ArithmeticTask()
    assert task.is_correct(sloppy("14"), GOLD)
    assert not task.is_correct(strict("15"), GOLD)
    assert not task.is_correct("14", GOLD)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"min_value": 5, "max_value": 1}, "min_value"),
        ({"ops": ("/",)}, "ops"),
        ({"ops": ()}, "ops"),
    ],
)
def test_bad_params_are_rejected_with_the_field_name(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ArithmeticTask(**params)
