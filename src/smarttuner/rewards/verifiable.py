"""Rewards computed from the completion text alone: the task verifier and the format check."""

from __future__ import annotations

from typing import Any

from smarttuner.formatting import format_ok
from smarttuner.rewards.base import RewardFn, register_reward
from smarttuner.tasks.base import Example, Task


@register_reward("correctness")
def correctness_reward(task: Task, **_: Any) -> RewardFn:
    """The task's own graded score in [0, 1] (needs the `example` column)."""

    def correctness(
        prompts: list[str], completions: list[str], example: list[Example], **_: Any
    ) -> list[float | None]:
        return [task.score(c, ex) for c, ex in zip(completions, example, strict=True)]

    return correctness


@register_reward("format")
def format_reward(task: Task | None = None, **_: Any) -> RewardFn:
    """1.0 when the completion is `<think>…</think>` then `<answer>…</answer>`, else 0.0."""

    def format_(prompts: list[str], completions: list[str], **_: Any) -> list[float | None]:
        return [1.0 if format_ok(c) else 0.0 for c in completions]

    return format_
