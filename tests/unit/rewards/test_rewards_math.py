"""The GSM8K recipe's four rewards on hand-written completions. Expected values are worked out
in the comments from the rules: exact format 3.0/0; +0.5 per tag present once, −0.5 per
missing or repeated; check_answer 3.0 / 1.5 (≤10 %) / 0.5 (≤20 %) / −0.5 / 0 without a
solution; check_numbers 1.5 equal, −0.5 different, 0 without a number."""

from __future__ import annotations

from pathlib import Path

import pytest

from smarttuner.rewards import RewardError, build_reward, compute_rewards, registered_rewards
from smarttuner.rewards.combine import NamedReward
from smarttuner.tasks.gsm8k import GSM8KTask

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "gsm8k_sample.jsonl"
NAMES = ["match_format_exactly", "match_format_approximately", "check_answer", "check_numbers"]


def done(answer: str, working: str = "12 + 18 = 30") -> str:
    return f"<start_working_out>{working}<end_working_out><SOLUTION>{answer}</SOLUTION>"


def run(name: str, completions: list[str], answers: list[str], **params) -> list:
    fn = build_reward(name, None, params)
    return fn(prompts=["q"] * len(completions), completions=completions, answer=answers)


# completion, gold, [exactly, approximately, check_answer, check_numbers]
CASES = [
    (done("30"), "30", [3.0, 2.0, 3.0, 1.5]),
    # whitespace around and text between working and solution are allowed (as in the recipe)
    (
        "  <start_working_out>\nw\n<end_working_out>\nSo:\n<SOLUTION> 1,250 </SOLUTION>\n",
        "1250",
        [3.0, 2.0, 3.0, 1.5],
    ),
    # no tags at all: -0.5 × 4; no solution -> 0; no number -> 0
    ("The answer is 30.", "30", [0.0, -2.0, 0.0, 0.0]),
    # two different answers: solution tags repeated (+0.5 +0.5 −0.5 −0.5 = 0), a hedge is
    # wrong (−0.5), and the last solution's number 31 ≠ 30 (−0.5)
    (done("30") + "<SOLUTION>31</SOLUTION>", "30", [0.0, 0.0, -0.5, -0.5]),
    # the same answer twice is still that answer, but not the exact format
    (done("30") + "<SOLUTION>30</SOLUTION>", "30", [0.0, 0.0, 3.0, 1.5]),
    # negative numbers keep their sign
    (done("-5", "4 - 9 = -5"), "-5", [3.0, 2.0, 3.0, 1.5]),
    # 5 vs −5: relative error 2 -> wrong; the number differs
    (done("5"), "-5", [3.0, 2.0, -0.5, -0.5]),
    # decimals: 7.50 = 7.5
    (done("7.50"), "7.5", [3.0, 2.0, 3.0, 1.5]),
    # close answers: |95 − 100| / 100 = 5 % -> 1.5; 15 % -> 0.5; 30 % -> wrong
    (done("95"), "100", [3.0, 2.0, 1.5, -0.5]),
    (done("110"), "100", [3.0, 2.0, 1.5, -0.5]),  # exactly 10 % is within 10 %
    (done("85"), "100", [3.0, 2.0, 0.5, -0.5]),
    (done("120"), "100", [3.0, 2.0, 0.5, -0.5]),
    (done("70"), "100", [3.0, 2.0, -0.5, -0.5]),
    # a number followed by words: math-verify reads 30; the first number is 30
    (done("30 dollars"), "30", [3.0, 2.0, 3.0, 1.5]),
    # words only: not a number -> wrong; no number -> 0
    (done("thirty"), "30", [3.0, 2.0, -0.5, 0.0]),
    # a truncated completion without the closing tag: no solution block for check_answer,
    # but check_numbers (like the recipe) reads the number after the opening tag
    ("<start_working_out>w<end_working_out><SOLUTION> 30", "30", [0.0, 1.0, 0.0, 1.5]),
    # commas in the gold are fine too
    (done("1250"), "1,250", [3.0, 2.0, 3.0, 1.5]),
    # empty working does not count as working out
    ("<start_working_out><end_working_out><SOLUTION>30</SOLUTION>", "30", [0.0, 2.0, 3.0, 1.5]),
]


@pytest.mark.parametrize("index", range(4))
def test_rewards_on_hand_written_completions(index: int) -> None:
    pytest.importorskip("math_verify")
    completions = [c for c, _, _ in CASES]
    answers = [g for _, g, _ in CASES]
    expected = [values[index] for _, _, values in CASES]
    assert run(NAMES[index], completions, answers) == pytest.approx(expected)


def test_registered() -> None:
    assert set(NAMES) <= set(registered_rewards())


def test_math_verify_equivalence_in_check_answer() -> None:
    pytest.importorskip("math_verify")
    # \frac{15}{2} = 7.5 exactly; \frac{3}{4} vs 0.8 is 6.25 % off -> 1.5
    assert run("check_answer", [done("\\frac{15}{2}"), done("\\frac{3}{4}")], ["7.5", "0.8"]) == [
        3.0,
        1.5,
    ]
    # the first number after the tag is 15: not the gold (the recipe's behaviour)
    assert run("check_numbers", [done("\\frac{15}{2}")], ["7.5"]) == [-0.5]
    # without math-verify only plain numbers compare
    assert run("check_answer", [done("\\frac{15}{2}")], ["7.5"], use_math_verify=False) == [-0.5]


def test_non_numeric_gold_does_not_apply_to_check_numbers() -> None:
    assert run("check_numbers", [done("Yes")], ["Yes"]) == [None]
    assert run("check_answer", [done("Yes"), done("No")], ["Yes", "Yes"]) == [3.0, -0.5]


def test_scores_and_tags_are_params() -> None:
    tags = {
        "reasoning_start": "<think>",
        "reasoning_end": "</think>",
        "solution_start": "<answer>",
        "solution_end": "</answer>",
    }
    good = "<think>3 + 4 = 7</think><answer>7</answer>"
    assert run("match_format_exactly", [good, done("7")], ["7", "7"], **tags) == [3.0, 0.0]
    assert run("match_format_exactly", [good], ["7"], score=1.0, **tags) == [1.0]
    assert run("match_format_approximately", [good], ["7"], per_tag=0.25, **tags) == [1.0]
    assert run("check_answer", [good, "<answer>6</answer>"], ["7", "7"], **tags) == [3.0, 0.5]
    assert run("check_answer", [good], ["7"], exact=1.0, **tags) == [1.0]
    assert run("check_numbers", [good, "<answer>8</answer>"], ["7", "7"], wrong=-1.0, **tags) == [
        1.5,
        -1.0,
    ]


def test_tags_default_to_the_tasks_own() -> None:
    task = GSM8KTask(path=str(SAMPLE), solution_start="<ans>", solution_end="</ans>")
    fn = build_reward("check_answer", task, {})
    text = "<start_working_out>w<end_working_out><ans>42</ans>"
    assert fn(prompts=["q"], completions=[text], answer=["42"]) == [3.0]
    assert build_reward("match_format_exactly", task, {})(prompts=["q"], completions=[text]) == [
        3.0
    ]


def test_bad_params_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"check_answer.*unknown parameter.*\['exactt'\]"):
        build_reward("check_answer", None, {"exactt": 2.0})
    with pytest.raises(ValueError, match="close_tolerance"):
        build_reward("check_answer", None, {"close_tolerance": 0.3, "near_tolerance": 0.2})
    with pytest.raises(ValueError, match="distinct"):
        build_reward("match_format_exactly", None, {"solution_start": "<end_working_out>"})


def test_missing_answer_column_names_the_reward() -> None:
    fn = build_reward("check_answer", None, {})
    with pytest.raises(ValueError, match="'check_answer' needs the column 'answer'"):
        fn(prompts=["q"], completions=[done("30")])
    rewards = [NamedReward("check_answer", 1.0, fn)]
    with pytest.raises(RewardError, match="check_answer"):
        compute_rewards(rewards, prompts=["q"], completions=[done("30")])


def test_weighted_sum_of_the_recipe() -> None:
    pytest.importorskip("math_verify")
    rewards = [NamedReward(n, 1.0, build_reward(n, None, {})) for n in NAMES]
    result = compute_rewards(
        rewards, prompts=["q", "q"], completions=[done("30"), "30"], answer=["30", "30"]
    )
    # perfect: 3 + 2 + 3 + 1.5 = 9.5; bare number: 0 − 2 + 0 + 0 = −2
    assert result.total.tolist() == pytest.approx([9.5, -2.0])
