"""Your own rewards, named 'module:function': dataset columns arrive as keyword arguments,
None means "does not apply", params bind as keywords, and a reward that raises stops with a
RewardError naming it."""

from __future__ import annotations

import math
import textwrap

import pytest

from smarttuner.rewards import (
    NamedReward,
    RewardError,
    build_reward,
    component_stats,
    compute_rewards,
)
from smarttuner.tasks import Example
from smarttuner.tasks.arithmetic import ArithmeticTask

USER_MODULE = """
SEEN = []

def record_columns(prompts, completions, **kwargs):
    SEEN.append({k: list(v) for k, v in kwargs.items()})
    return [1.0] * len(completions)

def trl_style(prompts, completions, answer, question, **kwargs):
    # a TRL reward written against named dataset columns
    return [1.0 if a in c else 0.0 for c, a in zip(completions, answer)]

def only_long(prompts, completions, min_length=5, **kwargs):
    return [None if len(c) < min_length else 2.0 for c in completions]

def from_metadata(prompts, completions, metadata, **kwargs):
    return [float(m["result"]) for m in metadata]

def broken(prompts, completions, **kwargs):
    raise KeyError("gold_label")
"""

TASK = ArithmeticTask()


@pytest.fixture()
def module(tmp_path, monkeypatch) -> str:
    (tmp_path / "st_user_rewards.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "st_user_rewards"


def columns(examples: list[Example]) -> dict:
    """The columns the GRPO trainer passes with every reward call."""
    return {
        "example": examples,
        "answer": [e.answer for e in examples],
        "question": [e.question for e in examples],
        "metadata": [e.metadata for e in examples],
    }


def run(module: str, name: str, completions: list[str], params: dict | None = None, **extra):
    examples = TASK.examples(0, len(completions))
    fn = build_reward(f"{module}:{name}", TASK, params or {})
    rewards = [NamedReward(f"{module}:{name}", 1.0, fn)]
    prompts = [e.question for e in examples]
    return compute_rewards(rewards, prompts, completions, **columns(examples), **extra), examples


def test_dataset_columns_arrive_as_keyword_arguments(module: str) -> None:
    result, examples = run(module, "record_columns", ["a", "b"])
    import st_user_rewards

    seen = st_user_rewards.SEEN[-1]
    assert set(seen) == {"example", "answer", "question", "metadata"}
    assert seen["answer"] == [e.answer for e in examples]
    assert seen["question"] == [e.question for e in examples]
    assert seen["metadata"] == [e.metadata for e in examples]
    assert result.total.tolist() == [1.0, 1.0]


def test_trl_style_signature_with_named_columns(module: str) -> None:
    examples = TASK.examples(0, 2)
    completions = [f"<answer>{examples[0].answer}</answer>", "<answer>nope</answer>"]
    result, _ = run(module, "trl_style", completions)
    assert result.components[f"{module}:trl_style"] == [1.0, 0.0]


def test_metadata_columns_reach_the_reward(module: str) -> None:
    result, examples = run(module, "from_metadata", ["x", "y"])
    assert result.total.tolist() == [float(e.metadata["result"]) for e in examples]


def test_none_means_does_not_apply(module: str) -> None:
    result, _ = run(module, "only_long", ["hi", "a long completion", "x"])
    name = f"{module}:only_long"
    assert result.components[name] == [None, 2.0, None]
    assert result.total.tolist() == [0.0, 2.0, 0.0]  # None adds nothing to the total
    stats = component_stats(result.components)
    key = name.replace(":", ".")
    assert stats[f"reward/{key}_mean"] == 2.0  # the mean is over samples where it applied
    assert stats[f"reward/{key}_std"] == 0.0
    # params bind as keyword arguments
    result, _ = run(module, "only_long", ["hi", "a long completion"], {"min_length": 1})
    assert result.components[name] == [2.0, 2.0]


def test_all_none_logs_nan_mean(module: str) -> None:
    result, _ = run(module, "only_long", ["a", "b"])
    stats = component_stats(result.components)
    assert math.isnan(stats[f"reward/{module}.only_long_mean"])


def test_a_raising_reward_is_a_reward_error_naming_it(module: str) -> None:
    with pytest.raises(RewardError) as info:
        run(module, "broken", ["a", "b"])
    message = str(info.value)
    assert f"reward '{module}:broken' raised KeyError" in message
    assert "gold_label" in message and "batch of 2" in message
    assert isinstance(info.value.__cause__, KeyError)


def test_unknown_user_reward_is_a_clear_error(module: str) -> None:
    with pytest.raises(ValueError, match="has no function 'missing'"):
        build_reward(f"{module}:missing", TASK, {})
    with pytest.raises(ValueError, match="cannot import module"):
        build_reward("no_such_module_xyz:fn", TASK, {})
