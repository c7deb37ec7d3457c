"""Rewards computed from the completion text alone: the task verifier and the format check."""

from __future__ import annotations

from typing import Any

from smarttuner.formatting import format_ok
from smarttuner.rewards.base import RewardFn, register_reward
from smarttuner.rewards.columns import check_params
from smarttuner.tasks.base import Example, Task


@register_reward("correctness")
def correctness_reward(task: Task, **params: Any) -> RewardFn:
    """The task's own graded score in [0, 1] (needs the `example` column).

    `partial_credit: false` pays 1.0 for the task's full marks and 0.0 otherwise. Some graded
    scores pay a little for any parsable answer (reasoning-gym's gsm_symbolic gives 0.01 to a
    wrong number, 0 to none), and GRPO's group-std scaling blows such a difference up to the
    size of a right-against-wrong one: in a group with no right answer, a missing answer then
    weighs as much as a right one would, and the group is never "flat" for
    `skip_zero_std_groups`."""
    check_params("correctness", params, ("partial_credit",))
    partial = params.get("partial_credit", True)
    if not isinstance(partial, bool):
        raise ValueError(
            f"reward 'correctness': partial_credit must be true or false, not {partial!r}"
        )

    def correctness(
        prompts: list[str], completions: list[str], example: list[Example], **_: Any
    ) -> list[float | None]:
        pairs = zip(completions, example, strict=True)
        if partial:
            return [task.score(c, ex) for c, ex in pairs]
        return [1.0 if task.is_correct(c, ex) else 0.0 for c, ex in pairs]

    return correctness


@register_reward("format")
def format_reward(task: Task | None = None, **_: Any) -> RewardFn:
    """1.0 when the completion is `<think>…</think>` then `<answer>…</answer>`, else 0.0."""

    def format_(prompts: list[str], completions: list[str], **_: Any) -> list[float | None]:
        return [1.0 if format_ok(c) else 0.0 for c in completions]

    return format_
