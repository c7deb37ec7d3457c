"""The arithmetic trace: place-value products, every written equation true, answer = gold."""

from __future__ import annotations

import re

import pytest

from smarttuner import formatting
from smarttuner.sft.arithmetic_trace import (
    arithmetic_reasoning,
    place_values,
    product_steps,
    sum_steps,
)
from smarttuner.sft.traces import arithmetic_trace
from smarttuner.tasks.arithmetic import ArithmeticTask


@pytest.mark.parametrize(
    ("n", "parts"), [(0, [0]), (7, [7]), (10, [10]), (305, [300, 5]), (323, [300, 20, 3])]
)
def test_place_values(n: int, parts: list[int]) -> None:
    assert place_values(n) == parts


def test_place_values_rejects_negative() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        place_values(-3)


def test_product_steps_worked_examples() -> None:
    assert product_steps(7, 9) == "7 * 9 = 63"
    assert product_steps(17, 5) == "17 * 5 = 10 * 5 + 7 * 5 = 50 + 35 = 85"
    assert product_steps(7, 14) == "7 * 14 = 7 * 10 + 7 * 4 = 70 + 28 = 98"
    assert product_steps(10, 19) == "10 * 19 = 190"
    assert product_steps(17, 11) == "17 * 11 = 17 * 10 + 17 * 1 = 170 + 17 = 187"
    assert product_steps(17, 19) == (
        "17 * 19 = 17 * 10 + 17 * 9; 17 * 9 = 10 * 9 + 7 * 9 = 90 + 63 = 153; "
        "so 17 * 19 = 170 + 153 = 323"
    )
    assert product_steps(323, 13) == (
        "323 * 13 = 323 * 10 + 323 * 3; 323 * 3 = 300 * 3 + 20 * 3 + 3 * 3 = 900 + 60 + 9; "
        "900 + 60 = 960; 960 + 9 = 969; so 323 * 13 = 3230 + 969 = 4199"
    )
    assert product_steps(-16, 5) == "16 * 5 = 10 * 5 + 6 * 5 = 50 + 30 = 80, so -16 * 5 = -80"


def test_sum_steps_worked_examples() -> None:
    assert sum_steps(45, "+", 7) == "45 + 7 = 40 + 5 + 7 = 40 + 12 = 52"
    assert sum_steps(40, "+", 7) == "40 + 7 = 47"
    assert sum_steps(45, "+", 17) == (
        "45 + 17 = 45 + 10 + 7; 45 + 10 = 55; 55 + 7 = 50 + 5 + 7 = 50 + 12 = 62"
    )
    assert sum_steps(62, "-", 5) == (
        "62 - 5: 2 < 5, so 62 - 5 = 50 + 10 - 5 + 2 = 50 + 5 + 2 = 50 + 7 = 57"
    )
    assert sum_steps(29, "-", 8) == "29 - 8: 9 >= 8, so 29 - 8 = 20 + 9 - 8 = 20 + 1 = 21"
    assert sum_steps(60, "-", 3) == "60 - 3: 0 < 3, so 60 - 3 = 50 + 10 - 3 = 50 + 7 = 57"
    assert sum_steps(16, "-", 8) == "16 - 8: 6 < 8, so 16 - 8 = 10 - 8 + 6 = 2 + 6 = 8"
    assert sum_steps(18, "-", 5) == "18 - 5: 8 >= 5, so 18 - 5 = 10 + 8 - 5 = 10 + 3 = 13"
    assert sum_steps(10, "-", 7) == "10 - 7 = 3"
    assert sum_steps(15, "-", 18) == (
        "15 - 18 = -(18 - 15); 18 - 15 = 18 - 10 - 5; 18 - 10 = 8; 8 - 5 = 3, so 15 - 18 = -3"
    )
    assert sum_steps(-8, "+", 10) == "-8 + 10 = 10 - 8; 10 - 8 = 2"
    assert sum_steps(-14, "-", 19) == (
        "-14 - 19 = -(14 + 19); 14 + 19 = 14 + 10 + 9; 14 + 10 = 24; "
        "24 + 9 = 20 + 4 + 9 = 20 + 13 = 33, so -14 - 19 = -33"
    )
    assert sum_steps(3, "-", 3) == "3 - 3 = 0"
    assert sum_steps(40, "+", 20) == "40 + 20 = 60"


def _value(expr: str) -> int:
    tokens = expr.split(" ")
    terms = [[int(tokens[0])]]
    for op, num in zip(tokens[1::2], tokens[2::2], strict=True):
        if op == "*":
            terms[-1].append(int(num))
        else:
            terms.append([int(num) if op == "+" else -int(num)])
    total = 0
    for term in terms:
        product = 1
        for factor in term:
            product *= factor
        total += product
    return total


def test_every_equation_and_comparison_in_2000_traces_is_true_and_the_answer_is_gold() -> None:
    task = ArithmeticTask()
    checked = compared = 0
    for example in task.examples(seed=7, n=2000):
        target = arithmetic_trace(example)
        assert formatting.format_ok(target)
        assert formatting.extract_answer(target) == example.answer
        reasoning = formatting.parse_completion(target).think
        for left, sign, right in re.findall(r"(\d+) (<|>=) (\d+)", reasoning):
            assert (int(left) < int(right)) == (sign == "<"), (example.question, reasoning)
            compared += 1
        for sentence in re.split(r"[.;,] ", reasoning):
            chain = [part.strip().rstrip(".") for part in sentence.split(" = ")]
            chain[0] = chain[0].removeprefix("First ").removeprefix("Then ").removeprefix("so ")
            if len(chain) < 2 or not all(re.fullmatch(r"-?\d+( [-+*] -?\d+)*", c) for c in chain):
                continue
            values = {_value(c) for c in chain}
            assert len(values) == 1, (example.question, sentence)
            checked += 1
    assert checked >= 4000  # at least both steps of every question were checked
    assert compared >= 500  # units comparisons (a borrow or not) are written and true


def test_reasoning_value_matches_the_operators() -> None:
    text, value = arithmetic_reasoning(5, "-", 19, "*", 12)
    assert value == -168
    assert text.endswith("So the answer is -168.")
    assert "-14 * 12" in text
