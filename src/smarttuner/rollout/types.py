"""What a rollout engine returns, and how raw sampled tokens become finished completions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase as Tokenizer


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int
    temperature: float  # 0 = greedy
    top_p: float = 1.0
    stop_strings: tuple[str, ...] = ()
    min_new_tokens: int = 0  # EOS cannot be sampled before this many tokens (as transformers')


@dataclass(frozen=True)
class RolloutBatch:
    """N = prompts × samples completions, prompt-major (a prompt's samples are adjacent)."""

    prompt_ids: torch.Tensor  # [N, P] left-padded
    prompt_mask: torch.Tensor  # [N, P] 1 on real prompt tokens
    completion_ids: torch.Tensor  # [N, C] right-padded
    completion_mask: torch.Tensor  # [N, C] 1 up to and including the stop/EOS token
    truncated: torch.Tensor  # [N] bool: hit max_new_tokens without EOS or a stop string
    texts: list[str]  # decoded completions (special tokens removed)

    @property
    def lengths(self) -> torch.Tensor:  # [N]
        return self.completion_mask.sum(dim=1)


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists -> ([B, P] ids, [B, P] mask), padded on the left."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        if prompt:
            ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[row, width - len(prompt) :] = 1
    return ids, mask


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:  # [B, L]
    """Position ids of a (left-)padded batch: real tokens count from 0, padding sits at 0."""
    return (mask.cumsum(dim=1) - 1).clamp(min=0)


def stop_length(ids: list[int], tokenizer: Tokenizer, stops: tuple[str, ...]) -> int | None:
    """Smallest k such that decode(ids[:k]) contains a stop string, or None (binary search)."""
    if not stops or not any(s in tokenizer.decode(ids) for s in stops):
        return None
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if any(s in tokenizer.decode(ids[:mid]) for s in stops):
            hi = mid
        else:
            lo = mid + 1
    return lo


def finalize(
    prompt_ids: torch.Tensor,  # [N, P]
    prompt_mask: torch.Tensor,  # [N, P]
    raw: torch.Tensor,  # [N, C] sampled tokens, anything after a row's end is ignored
    tokenizer: Tokenizer,
    eos_ids: set[int],
    stops: tuple[str, ...],
) -> RolloutBatch:
    """Cut each row at its first EOS (kept) or at the token that completes a stop string."""
    n, width = raw.shape
    pad_id = tokenizer.pad_token_id
    lengths: list[int] = []
    truncated: list[bool] = []
    for row in raw.tolist():
        end = next((i + 1 for i, tok in enumerate(row) if tok in eos_ids), None)
        stop = stop_length(row[: end or width], tokenizer, stops)
        if stop is not None:
            end = stop
        truncated.append(end is None)
        lengths.append(end or width)
    longest = max(lengths) if lengths else 0
    completion = torch.full((n, longest), pad_id, dtype=torch.long)
    mask = torch.zeros((n, longest), dtype=torch.long)
    for i, length in enumerate(lengths):
        completion[i, :length] = raw[i, :length]
        mask[i, :length] = 1
    texts = tokenizer.batch_decode(
        [completion[i, : lengths[i]].tolist() for i in range(n)], skip_special_tokens=True
    )
    return RolloutBatch(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        completion_ids=completion,
        completion_mask=mask,
        truncated=torch.tensor(truncated, dtype=torch.bool),
        texts=texts,
    )


def eos_token_ids(model, tokenizer: Tokenizer) -> set[int]:
    """EOS ids from the generation config, the model config and the tokenizer."""
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(v for v in value if isinstance(v, int))
    return ids
