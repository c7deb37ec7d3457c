"""Run every configured reward, check what it returns, and form the weighted sum.

`None` from a reward means "does not apply": it adds nothing to that sample's total and is
left out of that reward's logged mean. Components are kept for logging even at weight 0.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch

from smarttuner.rewards.base import RewardError, RewardFn


@dataclass(frozen=True)
class NamedReward:
    name: str
    weight: float
    fn: RewardFn


@dataclass(frozen=True)
class RewardResult:
    total: torch.Tensor  # [N] weighted sum
    components: dict[str, list[float | None]]  # reward name -> per-completion values


def _failing_sample(
    reward: NamedReward, prompts: list[str], completions: list[str], columns: dict
) -> int:
    """Index of the first sample the reward raises on alone (0 if none does by itself)."""
    for i in range(len(completions)):
        one = {k: v[i : i + 1] if isinstance(v, list) else v for k, v in columns.items()}
        try:
            reward.fn(prompts=prompts[i : i + 1], completions=completions[i : i + 1], **one)
        except Exception:
            return i
    return 0


def _call(reward: NamedReward, prompts: list[str], completions: list[str], columns: dict) -> list:
    try:
        values = list(reward.fn(prompts=prompts, completions=completions, **columns))
    except Exception as err:  # a user's function may raise anything: name it and the sample
        i = _failing_sample(reward, prompts, completions, columns)  # only on failure
        raise RewardError(
            f"reward {reward.name!r} raised {type(err).__name__}: {err} "
            f"(batch of {len(completions)}; sample {i}: prompt {prompts[i][:80]!r}, "
            f"completion {completions[i][:80]!r})"
        ) from err
    if len(values) != len(completions):
        raise RewardError(
            f"reward {reward.name!r} returned {len(values)} values "
            f"for {len(completions)} completions"
        )
    for i, v in enumerate(values):
        if v is not None and (not isinstance(v, numbers.Real) or not math.isfinite(float(v))):
            raise RewardError(
                f"reward {reward.name!r} gave {v!r} for sample {i} "
                f"(completion {completions[i][:80]!r}); rewards must be finite numbers or None"
            )
    return [None if v is None else float(v) for v in values]


def compute_rewards(
    rewards: list[NamedReward], prompts: list[str], completions: list[str], **columns: Any
) -> RewardResult:
    total = torch.zeros(len(completions), dtype=torch.float32)
    components: dict[str, list[float | None]] = {}
    for reward in rewards:
        values = _call(reward, prompts, completions, columns)
        components[reward.name] = values
        total += torch.tensor([0.0 if v is None else v for v in values]) * reward.weight
    return RewardResult(total=total, components=components)


def component_stats(components: dict[str, list[float | None]]) -> dict[str, float]:
    """reward/<name>_mean and reward/<name>_std over the samples where the reward applied."""
    stats: dict[str, float] = {}
    for name, values in components.items():
        present = torch.tensor([v for v in values if v is not None], dtype=torch.float32)
        key = name.replace(":", ".")
        stats[f"reward/{key}_mean"] = present.mean().item() if len(present) else float("nan")
        stats[f"reward/{key}_std"] = present.std().item() if len(present) > 1 else 0.0
    return stats
