"""Rollouts through transformers `generate`: the reference engine (and the one for models whose
cache the fast engine does not handle). Same sampling (temperature, top-p, no top-k)."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from smarttuner.rollout.types import (
    RolloutBatch,
    SamplingParams,
    eos_token_ids,
    finalize,
    left_pad,
)


@torch.no_grad()
def generate_hf(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    prompts: list[list[int]],
    num_samples: int,
    params: SamplingParams,
    generator: torch.Generator | None = None,
) -> RolloutBatch:
    """`num_samples` completions per prompt with `model.generate`, prompt-major.

    `generate` has no generator argument: when one is given, the global torch RNG is seeded
    from it so runs stay reproducible.
    """
    if generator is not None:
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    ids = ids.repeat_interleave(num_samples, dim=0)
    mask = mask.repeat_interleave(num_samples, dim=0)
    sampling = params.temperature > 0
    extra = {"temperature": params.temperature, "top_p": params.top_p} if sampling else {}
    out = model.generate(
        input_ids=ids.to(model.device),
        attention_mask=mask.to(model.device),
        max_new_tokens=params.max_new_tokens,
        min_new_tokens=params.min_new_tokens or None,
        do_sample=sampling,
        top_k=None,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=sorted(eos_token_ids(model, tokenizer)),
        stop_strings=list(params.stop_strings) or None,
        tokenizer=tokenizer if params.stop_strings else None,
        **extra,
    )
    raw = out[:, ids.shape[1] :].cpu()
    return finalize(ids, mask, raw, tokenizer, eos_token_ids(model, tokenizer), params.stop_strings)
