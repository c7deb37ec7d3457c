"""The true-equations process reward: chains found, every link checked exactly, text ignored."""

from __future__ import annotations

from fractions import Fraction

import pytest

from smarttuner.rewards import build_reward, registered_rewards
from smarttuner.rewards.equations import check_equations, evaluate, first_false_offset, links
from smarttuner.sft.traces import arithmetic_trace
from smarttuner.tasks.arithmetic import ArithmeticTask


@pytest.mark.parametrize(
    ("text", "counts"),
    [
        ("17 * 9 = 90 + 63 = 153; 170 + 153 = 313", (2, 3)),
        ("15 - 18 = -(18 - 15); 18 - 15 = 3, so 15 - 18 = -3.", (3, 3)),
        ("0.1 + 0.2 = 0.3 and 1,000 + 5 = 1005", (2, 2)),
        ("She has 3 apples = 3. x = 3 + 4. 12 / 0 = 5.", (0, 0)),
        ("(3 + 4) * 2 = 14 = 15", (1, 2)),
        ("7 / 2 = 3.5, then 2,3 = 5", (1, 1)),
    ],
)
def test_check_equations_counts_true_links(text: str, counts: tuple[int, int]) -> None:
    assert check_equations(text) == counts


def test_links_name_the_first_wrong_step_in_order() -> None:
    text = "First 8 * 19 = 8 * 10 + 8 * 9 = 80 + 62 = 142. Then 142 - 5 = 137."
    assert list(links(text)) == [
        ("8 * 19", "8 * 10 + 8 * 9", True),
        ("8 * 10 + 8 * 9", "80 + 62", False),
        ("80 + 62", "142", True),
        ("142 - 5", "137", True),
    ]


def test_evaluate_is_exact_and_refuses_anything_but_arithmetic() -> None:
    assert evaluate("-(18 - 15) * 2") == -6
    assert evaluate("1 / 3 + 1 / 3") == Fraction(2, 3)
    for bad in ("__import__('os')", "2 ** 8", "x + 1", "(1 + 2"):
        with pytest.raises(ValueError, match="not arithmetic"):
            evaluate(bad)


def test_every_programmatic_arithmetic_trace_scores_one() -> None:
    reward = build_reward("true_equations", ArithmeticTask(), {})
    traces = [arithmetic_trace(e) for e in ArithmeticTask().examples(seed=3, n=300)]
    assert set(reward([""] * len(traces), traces)) == {1.0}


def test_reward_reads_the_reasoning_and_pays_empty_without_equations() -> None:
    assert "true_equations" in registered_rewards()
    reward = build_reward("true_equations", ArithmeticTask(), {"empty": 0.5})
    completions = [
        "<think> 7 * 8 = 54; 54 + 1 = 55 </think><answer> 55 </answer>",
        "<think> I know it. </think><answer> 2 + 2 = 4 </answer>",  # answer block not read
        "no tags: 2 + 2 = 5",
    ]
    assert reward(["p"] * 3, completions) == [0.5, 0.5, 0.0]
    with pytest.raises(ValueError, match="unknown parameter"):
        build_reward("true_equations", ArithmeticTask(), {"weight": 2})


@pytest.mark.parametrize(
    ("text", "slip"),
    [
        ("17 * 9 = 90 + 63 = 143; 170 + 143 = 313", "143; 170"),
        ("2 + 2 = 4 and 3 * 3 =  10 so", "10 so"),
        ("(3 + 4) * 2 = 14 = 15", "15"),
        ("1,000 + 5 = 1,006 = 1006", "1,006 = 1006"),
    ],
)
def test_first_false_offset_points_at_the_false_right_side(text: str, slip: str) -> None:
    at = first_false_offset(text)
    assert at is not None and text[at:].startswith(slip)


def test_first_false_offset_is_none_when_every_step_holds() -> None:
    assert first_false_offset("17 * 9 = 90 + 63 = 153; no equations here") is None
    assert first_false_offset("") is None
