"""The experience buffer: completions with everything the loss needs, kept across iterations.

Each iteration appends its fresh completions and evicts the oldest beyond `capacity`. A training
pass draws `ceil(fresh / batch_size)` minibatches uniformly without replacement from the whole
buffer, so with `capacity` equal to one iteration's completions training is purely on-policy,
and a larger buffer replays older experience (its stored old log-probs keep the PPO ratio
honest about how stale it is).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Experience:
    """One completion. Prompt/completion ids are unpadded; padding happens in `collate`."""

    prompt_ids: torch.Tensor  # [P_i]
    completion_ids: torch.Tensor  # [C_i]
    old_logprobs: torch.Tensor | None  # [C_i] under the sampling policy; None = on-policy reuse
    ref_logprobs: torch.Tensor | None  # [C_i] under the reference, None when beta = 0
    advantage: float
    iteration: int
    group: int = 0  # which prompt of its iteration it answers: (iteration, group) = its group
    credit_from: int = 0  # first completion token the advantage applies to (grpo/credit.py)


@dataclass(frozen=True)
class Minibatch:
    prompt_ids: torch.Tensor  # [n, P] left-padded
    prompt_mask: torch.Tensor  # [n, P]
    completion_ids: torch.Tensor  # [n, C] right-padded
    completion_mask: torch.Tensor  # [n, C]
    old_logprobs: torch.Tensor | None  # [n, C]; None: use the current log-probs, detached
    ref_logprobs: torch.Tensor | None  # [n, C]
    advantages: torch.Tensor  # [n, C] per token: 0 before a row's `credit_from`


def _pad(rows: list[torch.Tensor], value: float, left: bool, dtype: torch.dtype) -> torch.Tensor:
    width = max(r.shape[0] for r in rows)
    out = torch.full((len(rows), width), value, dtype=dtype)
    for i, r in enumerate(rows):
        if left:
            out[i, width - r.shape[0] :] = r
        else:
            out[i, : r.shape[0]] = r
    return out


def collate(items: list[Experience], pad_id: int) -> Minibatch:
    prompts = [e.prompt_ids for e in items]
    completions = [e.completion_ids for e in items]
    ones = [torch.ones_like(t) for t in prompts]
    ref = old = None
    if all(e.old_logprobs is not None for e in items):
        old = _pad([e.old_logprobs for e in items], 0.0, False, torch.float32)
    if all(e.ref_logprobs is not None for e in items):
        ref = _pad([e.ref_logprobs for e in items], 0.0, False, torch.float32)
    return Minibatch(
        prompt_ids=_pad(prompts, pad_id, True, torch.long),
        prompt_mask=_pad(ones, 0, True, torch.long),
        completion_ids=_pad(completions, pad_id, False, torch.long),
        completion_mask=_pad([torch.ones_like(t) for t in completions], 0, False, torch.long),
        old_logprobs=old,
        ref_logprobs=ref,
        advantages=token_advantages(items, max(c.shape[0] for c in completions)),
    )


def token_advantages(items: list[Experience], width: int) -> torch.Tensor:  # [n, width]
    """Each row's advantage on its tokens from `credit_from` on, 0 before (padding, which the
    completion mask drops, keeps the row's value)."""
    advantage = torch.tensor([e.advantage for e in items], dtype=torch.float32)  # [n]
    start = torch.tensor([e.credit_from for e in items])  # [n]
    credited = torch.arange(width).unsqueeze(0) >= start.unsqueeze(1)  # [n, width]
    return advantage.unsqueeze(1) * credited


class ExperienceBuffer:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: list[Experience] = []

    def __len__(self) -> int:
        return len(self.items)

    def add(self, experiences: list[Experience]) -> None:
        self.items.extend(experiences)
        if len(self.items) > self.capacity:
            self.items = self.items[len(self.items) - self.capacity :]

    def minibatches(
        self, num_batches: int, batch_size: int, generator: torch.Generator
    ) -> list[list[Experience]]:
        """`num_batches` minibatches drawn without replacement (as far as the buffer allows).

        Groups are shuffled as units and their completions kept next to each other, so a
        minibatch holds few distinct prompts and the shared-prompt forward
        (`logprobs.completion_logprobs`) runs each prompt once for many rows."""
        order = self._group_order(generator)
        batches = []
        for b in range(num_batches):
            idx = order[(b * batch_size) % len(order) :][:batch_size]
            if len(idx) < batch_size:  # wrap around a buffer smaller than what is asked
                idx += order[: batch_size - len(idx)]
            batches.append([self.items[i] for i in idx])
        return batches

    def _group_order(self, generator: torch.Generator) -> list[int]:
        groups: dict[tuple[int, int], list[int]] = {}
        for i in torch.randperm(len(self.items), generator=generator).tolist():
            e = self.items[i]
            groups.setdefault((e.iteration, e.group), []).append(i)
        keys = list(groups)
        return [
            i
            for g in torch.randperm(len(keys), generator=generator).tolist()
            for i in groups[keys[g]]
        ]
