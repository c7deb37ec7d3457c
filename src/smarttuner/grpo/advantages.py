"""Group-relative advantages (Shao et al. 2024, DeepSeekMath §4.1.2), as pure tensor functions.

Rewards arrive flat, `[B*G]`, with the G completions of a prompt next to each other. Each is
centred on its group's mean; the scale is the group std (the paper), the batch std (Dr. GRPO's
remark that per-group std up-weights near-uniform groups; also TRL's `scale_rewards="batch"`),
or nothing (Dr. GRPO, Liu et al. 2025). `epsilon` keeps an all-equal group at advantage 0.
"""

from __future__ import annotations

import torch


def group_advantages(
    rewards: torch.Tensor,  # [B*G]
    group_size: int,
    scale: str = "group",
    epsilon: float = 1e-4,
) -> torch.Tensor:  # [B*G]
    """(r - mean_group(r)) / (std + epsilon), std per `scale`: 'group', 'batch' or 'none'."""
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(
            f"rewards of shape {tuple(rewards.shape)} do not split into groups of {group_size}"
        )
    grouped = rewards.view(-1, group_size)  # [B, G]
    centred = grouped - grouped.mean(dim=1, keepdim=True)  # [B, G]
    # an all-equal group's mean can differ from its members by an ulp; dividing that by
    # `epsilon` would give it advantages of ~1e-3 instead of 0
    centred = centred.masked_fill(zero_std_groups(rewards, group_size).unsqueeze(1), 0.0)
    if scale == "group":
        std = grouped.std(dim=1, keepdim=True)  # [B, 1]  (unbiased, as in the paper's code)
    elif scale == "batch":
        std = rewards.std().expand(grouped.shape[0], 1)  # [B, 1]
    elif scale == "none":
        return centred.reshape(-1)
    else:
        raise ValueError(f"unknown advantage scale {scale!r}; use 'group', 'batch' or 'none'")
    return (centred / (std + epsilon)).reshape(-1)


def zero_std_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:  # [B] bool
    """True for each group whose rewards are all equal (no learning signal)."""
    grouped = rewards.view(-1, group_size)  # [B, G]
    return (grouped.max(dim=1).values - grouped.min(dim=1).values).abs() < 1e-8
