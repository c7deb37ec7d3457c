"""One training pass over minibatches drawn from the experience buffer: forward, GRPO loss,
backward, gradient accumulation, clipping and optimizer steps, with a non-finite guard.

A minibatch skipped for a non-finite loss (or an empty one: a process with no experience for
that slot) still fills its place in the accumulation window, so windows close at the same
minibatch on every process; a window where nothing contributed takes no step.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from smarttuner import fsdp
from smarttuner.grpo.buffer import Experience, collate
from smarttuner.grpo.logprobs import bucketed_logprobs
from smarttuner.grpo.loss import grpo_loss

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Too many non-finite losses or gradients in a row."""


@dataclass(frozen=True)
class LossSettings:
    epsilon: float
    epsilon_high: float | None
    beta: float
    loss_type: str
    max_completion_length: int
    temperature: float
    max_grad_norm: float
    gradient_accumulation_steps: int
    max_nonfinite_in_a_row: int = 3


@dataclass
class OptimState:
    """What persists across passes: the accumulation position and the non-finite streak."""

    accumulated: int = 0
    window_tokens: float = 0.0  # completion tokens accumulated in the open window (dapo)
    nonfinite_in_a_row: int = 0
    optimizer_steps: int = 0
    contributed: int = 0  # minibatches of the open window whose gradients were accumulated


# Averages (sums, when the bool is False) the trainable gradients and the window counts in
# OptimState across processes before a step; see smarttuner.distributed.
GradSync = Callable[[list[torch.nn.Parameter], OptimState, bool], None]


def _windows(
    batches: list[list[Experience]], size: int, start: int
) -> list[list[list[Experience]]]:
    """Group minibatches into accumulation windows (the first one completes a carried window)."""
    first = size - start
    out = [batches[:first]] if first > 0 else []
    rest = batches[first:] if first > 0 else batches
    out += [rest[i : i + size] for i in range(0, len(rest), size)]
    return [w for w in out if w]


def train_pass(
    model: PreTrainedModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batches: list[list[Experience]],
    settings: LossSettings,
    state: OptimState,
    pad_id: int,
    sync: GradSync | None = None,
) -> dict[str, float]:
    """Train on `batches`; returns the minibatch-mean loss and policy loss, the token-mean KL and
    clip fraction (with `trained_tokens`, their weight when processes are merged) and the last
    grad norm.

    `sync` (several processes) all-reduces the gradients before each optimizer step."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    sums = {"loss": 0.0, "policy_loss": 0.0}
    token_sums = {"kl": 0.0, "clip_fraction": 0.0}  # token-weighted over the pass
    tokens = 0.0
    grad_norm = float("nan")
    seen = 0
    k = settings.gradient_accumulation_steps
    sharded = fsdp.is_sharded(model)
    slots_left = len(batches)
    for window in _windows(batches, k, state.accumulated):
        for items in window:
            slots_left -= 1
            # sharded: reduce-scatter only on the backward that closes a window or the pass
            fsdp.set_gradient_sync(model, state.accumulated + 1 >= k or not slots_left)
            if not items:  # nothing for this slot on this process
                state.accumulated += 1
                if sharded:
                    fsdp.zero_backward(model, pad_id)
                continue
            mb = collate(items, pad_id)
            logprobs = bucketed_logprobs(
                model,
                mb.prompt_ids,
                mb.prompt_mask,
                mb.completion_ids,
                mb.completion_mask,
                settings.temperature,
            )  # [n, C]
            device = logprobs.device
            out = grpo_loss(
                logprobs,
                logprobs.detach() if mb.old_logprobs is None else mb.old_logprobs.to(device),
                mb.advantages.to(device),
                mb.completion_mask.to(device),
                epsilon=settings.epsilon,
                epsilon_high=settings.epsilon_high,
                beta=settings.beta,
                ref_logprobs=None if mb.ref_logprobs is None else mb.ref_logprobs.to(device),
                loss_type=settings.loss_type,
                max_completion_length=settings.max_completion_length,
                token_normaliser=1.0,  # dapo: a token sum, divided by the window tokens in _step
            )
            # dapo normalises by all completion tokens of the accumulation window, which may span
            # two passes: its gradients are summed and divided by the count in `_step`. The other
            # loss types average the window's minibatches.
            mb_tokens = float(mb.completion_mask.sum())
            scale = 1.0 if settings.loss_type == "dapo" else 1.0 / k
            if not torch.isfinite(out.loss):
                state.accumulated += 1
                if sharded:
                    del logprobs, out
                    fsdp.zero_backward(model, pad_id)
                _nonfinite(state, settings, "loss")
                continue
            (out.loss * scale).backward()
            seen += 1
            per_token = settings.loss_type == "dapo"
            for key in sums:
                value = float(getattr(out, key).detach())
                sums[key] += value / mb_tokens if per_token else value
            for key in token_sums:
                token_sums[key] += float(getattr(out, key)) * mb_tokens
            tokens += mb_tokens
            state.accumulated += 1
            state.contributed += 1
            state.window_tokens += mb_tokens
        if state.accumulated >= k:
            grad_norm = _step(model, optimizer, scheduler, params, settings, state, sync)
    n = max(seen, 1)
    return {
        **{k_: v / n for k_, v in sums.items()},
        **{k_: v / max(tokens, 1.0) for k_, v in token_sums.items()},
        "trained_tokens": tokens,
        "grad_norm": grad_norm,
        "optimizer_steps": state.optimizer_steps,
    }


def _nonfinite(state: OptimState, settings: LossSettings, what: str) -> None:
    state.nonfinite_in_a_row += 1
    log.warning("non-finite %s: update skipped (%d in a row)", what, state.nonfinite_in_a_row)
    if state.nonfinite_in_a_row >= settings.max_nonfinite_in_a_row:
        raise NonFiniteLossError(
            f"{state.nonfinite_in_a_row} non-finite {what} values in a row; stopping "
            "(lower the learning rate or check the rewards)"
        )


def _step(
    model, optimizer, scheduler, params, settings: LossSettings, state: OptimState, sync=None
) -> float:
    if sync is not None:
        sync(params, state, settings.loss_type != "dapo")
    if not state.contributed:  # every minibatch of the window was skipped: nothing to apply
        optimizer.zero_grad(set_to_none=True)
        state.accumulated = 0
        state.window_tokens = 0.0
        return float("nan")
    if settings.loss_type == "dapo":
        for p in params:
            if p.grad is not None:
                p.grad.div_(max(state.window_tokens, 1.0))
    norm = fsdp.full_norm(torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm))
    state.accumulated = 0
    state.window_tokens = 0.0
    state.contributed = 0
    if not math.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        _nonfinite(state, settings, "gradient norm")
        return norm
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    state.nonfinite_in_a_row = 0
    state.optimizer_steps += 1
    return norm
