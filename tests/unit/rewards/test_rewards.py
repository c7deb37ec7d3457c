"""Rewards: the built-in format and correctness rewards, the weighted sum with None, user
rewards named 'module:function', and the errors that name the faulty reward."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest

from smarttuner.rewards import (
    NamedReward,
    RewardError,
    build_reward,
    component_stats,
    compute_rewards,
    register_reward,
    registered_rewards,
)
from smarttuner.rewards import base as reward_base
from smarttuner.tasks import Example
from smarttuner.tasks.arithmetic import ArithmeticTask

TASK = ArithmeticTask()
GOLD = Example(
    question="Calculate (3 + 4) * 2. Give the final answer as a single integer.", answer="14"
)

GOOD = "<think>3 + 4 = 7, 7 * 2 = 14</think><answer>14</answer>"
FORMAT_CASES = {
    GOOD: 1.0,
    "  <think>\nstep\n</think>\n<answer> 14 </answer>\n": 1.0,  # whitespace around is fine
    "<answer>14</answer>": 0.0,  # no think block
    "<think>7 * 2</think>": 0.0,  # no answer block
    "<think>a</think><answer>14</answer><answer>15</answer>": 0.0,  # two answers
    "<think>a</think><answer>14</answer> and that is final": 0.0,  # text after the answer
    "So: <think>a</think><answer>14</answer>": 0.0,  # text before the think block
    "": 0.0,
}


def call(fn, completions: list[str], examples: list[Example] | None = None) -> list:
    examples = examples or [GOLD] * len(completions)
    return fn(
        prompts=["q"] * len(completions),
        completions=completions,
        example=examples,
        answer=[e.answer for e in examples],
    )


def test_builtin_rewards_are_registered() -> None:
    assert {"correctness", "format"} <= set(registered_rewards())


def test_format_reward_on_hand_written_completions() -> None:
    fn = build_reward("format", TASK, {})
    assert call(fn, list(FORMAT_CASES)) == list(FORMAT_CASES.values())


def test_correctness_reward_is_the_task_score() -> None:
    fn = build_reward("correctness", TASK, {})
    completions = [
        GOOD,  # strict format 0.2 + within ±1 0.2 + exact 0.6
        "The answer is <answer>14</answer>",  # sloppy but exact: 0.8
        "<think>x</think><answer>15</answer>",  # format + close: 0.4
        "<think>x</think><answer>99</answer>",  # format only: 0.2
        "14",  # no answer tag: 0.0
    ]
    assert call(fn, completions) == pytest.approx([1.0, 0.8, 0.4, 0.2, 0.0])


def test_correctness_without_partial_credit_pays_only_full_marks() -> None:
    """The same completions as above: 1 where the task counts the answer right, else 0."""
    fn = build_reward("correctness", TASK, {"partial_credit": False})
    completions = [
        GOOD,
        "The answer is <answer>14</answer>",  # right answer, sloppy format: still right
        "<think>x</think><answer>15</answer>",
        "<think>x</think><answer>99</answer>",
        "14",
    ]
    expected = [1.0 if TASK.is_correct(c, GOLD) else 0.0 for c in completions]
    assert call(fn, completions) == expected == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_correctness_refuses_unknown_or_non_boolean_params() -> None:
    with pytest.raises(ValueError, match="unknown parameter"):
        build_reward("correctness", TASK, {"partial": False})
    with pytest.raises(ValueError, match="partial_credit must be true or false"):
        build_reward("correctness", TASK, {"partial_credit": "no"})


def test_correctness_uses_each_samples_own_example() -> None:
    fn = build_reward("correctness", TASK, {})
    other = Example(question="q", answer="15")
    assert call(fn, [GOOD, GOOD], [GOLD, other]) == pytest.approx([1.0, 0.4])


def none_for_short(prompts, completions, **_):
    return [None if len(c) < 5 else 1.0 for c in completions]


def test_weighted_sum_with_none() -> None:
    rewards = [
        NamedReward("correctness", 0.85, build_reward("correctness", TASK, {})),
        NamedReward("format", 0.15, build_reward("format", TASK, {})),
        NamedReward("long", 2.0, none_for_short),
    ]
    completions = [GOOD, "14", "<answer>14</answer>"]
    result = compute_rewards(
        rewards, prompts=["q"] * 3, completions=completions, example=[GOLD] * 3
    )
    # GOOD:  0.85·1.0 + 0.15·1 + 2·1 = 3.0
    # "14":  0.85·0.0 + 0.15·0 + (None -> 0) = 0.0
    # sloppy exact: 0.85·0.8 + 0.15·0 + 2·1 = 2.68
    assert result.total.tolist() == pytest.approx([3.0, 0.0, 2.68])
    assert result.components["long"] == [1.0, None, 1.0]
    assert result.components["format"] == [1.0, 0.0, 0.0]
    assert list(result.components) == ["correctness", "format", "long"]


def test_weight_zero_is_still_logged() -> None:
    rewards = [
        NamedReward("format", 0.0, build_reward("format", TASK, {})),
        NamedReward("correctness", 1.0, build_reward("correctness", TASK, {})),
    ]
    result = compute_rewards(rewards, prompts=["q"], completions=[GOOD], example=[GOLD])
    assert result.total.tolist() == pytest.approx([1.0])
    assert result.components["format"] == [1.0]


USER_MODULE = """
def length_reward(prompts, completions, scale=1.0, **kwargs):
    return [scale * len(c) for c in completions]

def uses_answer(prompts, completions, answer, **kwargs):
    return [1.0 if a in c else 0.0 for c, a in zip(completions, answer)]

NOT_A_FUNCTION = 3
"""


@pytest.fixture()
def user_module(tmp_path, monkeypatch) -> str:
    (tmp_path / "my_st_rewards.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_st_rewards"


def test_user_reward_module_function(user_module: str) -> None:
    fn = build_reward(f"{user_module}:length_reward", TASK, {})
    assert call(fn, ["ab", "abcd"]) == [2.0, 4.0]
    scaled = build_reward(f"{user_module}:length_reward", TASK, {"scale": 0.5})
    assert call(scaled, ["ab", "abcd"]) == [1.0, 2.0]
    # TRL-style: dataset columns arrive as keyword lists
    answer = build_reward(f"{user_module}:uses_answer", TASK, {})
    assert call(answer, [GOOD, "no"]) == [1.0, 0.0]


def test_user_reward_in_the_weighted_sum_and_stats(user_module: str) -> None:
    name = f"{user_module}:length_reward"
    rewards = [NamedReward(name, 0.1, build_reward(name, TASK, {}))]
    result = compute_rewards(rewards, prompts=["q", "q"], completions=["abc", "abcde"])
    assert result.total.tolist() == pytest.approx([0.3, 0.5])
    stats = component_stats(result.components)
    assert stats[f"reward/{user_module}.length_reward_mean"] == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("no_such_module_xyz:fn", "cannot import module 'no_such_module_xyz'"),
        ("my_st_rewards:missing", "no function 'missing'"),
        ("my_st_rewards:NOT_A_FUNCTION", "no function 'NOT_A_FUNCTION'"),
    ],
)
def test_bad_user_reward_specs(user_module: str, spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_reward(spec, TASK, {})


def test_unknown_reward_lists_the_registered_ones() -> None:
    with pytest.raises(ValueError, match="unknown reward 'lenght'.*correctness.*format"):
        build_reward("lenght", TASK, {})


def test_register_reward_refuses_a_duplicate(monkeypatch) -> None:
    monkeypatch.setattr(reward_base._REWARDS, "_items", dict(reward_base._REWARDS._items))

    @register_reward("test_only_reward")
    def factory(task=None, **_):
        return none_for_short

    assert "test_only_reward" in registered_rewards()
    assert build_reward("test_only_reward", TASK, {}) is none_for_short
    with pytest.raises(ValueError, match="already registered"):
        register_reward("test_only_reward")(factory)
    with pytest.raises(ValueError, match="already registered"):
        register_reward("format")(factory)


def raises(prompts, completions, **_):
    raise KeyError("gold")


def test_a_reward_that_raises_names_the_reward() -> None:
    rewards = [NamedReward("mine", 1.0, raises)]
    with pytest.raises(RewardError, match="reward 'mine' raised KeyError") as info:
        compute_rewards(rewards, prompts=["What is 2+2?"], completions=["4"])
    assert "What is 2+2?" in str(info.value)
    assert isinstance(info.value.__cause__, KeyError)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([1.0], "returned 1 values for 2 completions"),
        ([1.0, 2.0, 3.0], "returned 3 values for 2 completions"),
        ([1.0, float("nan")], "gave nan for sample 1"),
        ([float("inf"), 1.0], "gave inf for sample 0"),
        ([1.0, "1.0"], "gave '1.0' for sample 1"),
    ],
)
def test_bad_reward_values_name_the_reward(values: list, match: str) -> None:
    rewards = [NamedReward("broken", 1.0, lambda prompts, completions, **_: values)]
    with pytest.raises(RewardError, match=match) as info:
        compute_rewards(rewards, prompts=["p", "p"], completions=["a", "b"])
    assert "'broken'" in str(info.value)


def test_ints_and_bools_are_numbers() -> None:
    rewards = [NamedReward("r", 1.0, lambda prompts, completions, **_: [1, True])]
    result = compute_rewards(rewards, prompts=["p", "p"], completions=["a", "b"])
    assert result.components["r"] == [1.0, 1.0]
    assert all(isinstance(v, float) for v in result.components["r"])


def test_numpy_scalars_are_numbers() -> None:
    rewards = [
        NamedReward("np", 1.0, lambda prompts, completions, **_: [np.float32(0.5), np.int64(1)])
    ]
    result = compute_rewards(rewards, prompts=["p", "p"], completions=["a", "b"])
    assert result.total.tolist() == pytest.approx([0.5, 1.0])


def test_component_stats() -> None:
    stats = component_stats(
        {
            "format": [1.0, 0.0, 1.0, 0.0],
            "sparse": [None, 2.0, None, 4.0],
            "single": [None, 3.0, None, None],
            "never": [None, None, None, None],
            "pkg.mod:fn": [1.0, 1.0, 1.0, 1.0],
        }
    )
    assert stats["reward/format_mean"] == pytest.approx(0.5)
    assert stats["reward/format_std"] == pytest.approx(math.sqrt(1 / 3))  # unbiased
    assert stats["reward/sparse_mean"] == pytest.approx(3.0)  # None samples left out
    assert stats["reward/sparse_std"] == pytest.approx(math.sqrt(2.0))
    assert stats["reward/single_mean"] == pytest.approx(3.0)
    assert stats["reward/single_std"] == 0.0
    assert math.isnan(stats["reward/never_mean"])
    assert stats["reward/never_std"] == 0.0
    assert stats["reward/pkg.mod.fn_mean"] == 1.0  # ':' is not a metric-name character
    assert len(stats) == 10


def raises_on_the_second(prompts, completions, **_):
    return [1.0 / (len(c) - 3) for c in completions]  # "bad" (3 chars) divides by zero


def test_a_raising_reward_names_the_sample_it_failed_on() -> None:
    rewards = [NamedReward("picky", 1.0, raises_on_the_second)]
    with pytest.raises(RewardError, match="sample 1: prompt 'p1', completion 'bad'"):
        compute_rewards(rewards, prompts=["p0", "p1", "p2"], completions=["good", "bad", "fine"])
