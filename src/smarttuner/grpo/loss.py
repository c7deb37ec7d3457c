"""The GRPO objective as pure tensor functions: the PPO clipped surrogate, the k3 KL
estimator, and the loss aggregations.

Shapes: `[N, T]` is N completions by T completion-token positions, with `mask` 1 on real
completion tokens and 0 on padding.

Departures from the paper, all optional and named:
- `epsilon_high` > `epsilon` is DAPO's clip-higher (Yu et al. 2025).
- Aggregations beyond the paper's per-sequence mean ("grpo"): "bnpo" (token mean over the
  minibatch), "dapo" (token sum over a normaliser the caller passes: the completion-token count
  of the whole accumulated batch), "dr_grpo" (token sum over N × max_completion_length,
  Liu et al. 2025, which removes the length bias of the per-sequence mean).
- The KL term is added per token before aggregation, as in the paper's equation 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo")


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:  # [N, T]
    """Schulman's k3 estimator of KL(π‖π_ref) per token: exp(r) - r - 1 with r = ref - logπ.

    Unbiased and always ≥ 0 (http://joschu.net/blog/kl-approx.html)."""
    delta = ref_logprobs - logprobs  # [N, T]
    return torch.exp(delta) - delta - 1.0


def clipped_surrogate(
    logprobs: torch.Tensor,  # [N, T]
    old_logprobs: torch.Tensor,  # [N, T]
    advantages: torch.Tensor,  # [N] per sequence, or [N, T] per token
    epsilon: float,
    epsilon_high: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:  # ([N, T] per-token loss, [N, T] clipped flag)
    """-min(ρA, clip(ρ, 1-ε, 1+ε_high)A) per token, and where the clip was the active term."""
    high = epsilon if epsilon_high is None else epsilon_high
    ratio = torch.exp(logprobs - old_logprobs)  # [N, T]
    adv = advantages if advantages.ndim == 2 else advantages.unsqueeze(1)  # [N, T] or [N, 1]
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + high) * adv
    is_clipped = clipped < unclipped  # the min picked the clipped term
    return -torch.minimum(unclipped, clipped), is_clipped


def aggregate(
    per_token: torch.Tensor,  # [N, T]
    mask: torch.Tensor,  # [N, T]
    loss_type: str,
    max_completion_length: int | None = None,
    token_normaliser: float | None = None,
) -> torch.Tensor:  # scalar
    """Reduce a per-token loss to a scalar the way `loss_type` says (see module docstring)."""
    mask = mask.to(per_token.dtype)
    masked = per_token * mask
    if loss_type == "grpo":
        return (masked.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)).mean()
    if loss_type == "bnpo":
        return masked.sum() / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        length = max_completion_length or per_token.shape[1]
        return masked.sum() / (per_token.shape[0] * length)
    if loss_type == "dapo":
        normaliser = token_normaliser if token_normaliser is not None else mask.sum().item()
        return masked.sum() / max(float(normaliser), 1.0)
    raise ValueError(f"unknown loss_type {loss_type!r}; use one of {', '.join(LOSS_TYPES)}")


@dataclass(frozen=True)
class LossOutput:
    loss: torch.Tensor  # scalar, differentiable
    policy_loss: torch.Tensor  # scalar, detached
    kl: torch.Tensor  # scalar, detached: token-mean KL (0 when beta = 0)
    clip_fraction: torch.Tensor  # scalar, detached: share of tokens where the clip was active


def grpo_loss(
    logprobs: torch.Tensor,  # [N, T]
    old_logprobs: torch.Tensor,  # [N, T]
    advantages: torch.Tensor,  # [N] or [N, T] (see `clipped_surrogate`)
    mask: torch.Tensor,  # [N, T]
    *,
    epsilon: float,
    epsilon_high: float | None = None,
    beta: float = 0.0,
    ref_logprobs: torch.Tensor | None = None,  # [N, T], needed when beta > 0
    loss_type: str = "grpo",
    max_completion_length: int | None = None,
    token_normaliser: float | None = None,
) -> LossOutput:
    """Clipped surrogate + beta·KL_k3 per token, aggregated by `loss_type`."""
    per_token, is_clipped = clipped_surrogate(
        logprobs, old_logprobs, advantages, epsilon, epsilon_high
    )
    mask_f = mask.to(logprobs.dtype)
    n_tokens = mask_f.sum().clamp(min=1.0)
    kl_mean = torch.zeros((), dtype=logprobs.dtype)
    total = per_token
    if beta > 0.0:
        if ref_logprobs is None:
            raise ValueError("beta > 0 needs ref_logprobs")
        kl = kl_k3(logprobs, ref_logprobs)  # [N, T]
        total = per_token + beta * kl
        kl_mean = (kl * mask_f).sum().detach() / n_tokens
    agg = dict(
        loss_type=loss_type,
        max_completion_length=max_completion_length,
        token_normaliser=token_normaliser,
    )
    return LossOutput(
        loss=aggregate(total, mask, **agg),
        policy_loss=aggregate(per_token, mask, **agg).detach(),
        kl=kl_mean,
        clip_fraction=(is_clipped.to(mask_f.dtype) * mask_f).sum().detach() / n_tokens,
    )
