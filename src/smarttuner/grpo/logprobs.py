"""Per-token log-probabilities of completion tokens under a model (policy, old policy or
reference), computed with logits divided by the sampling temperature, as the samples were
drawn (the same convention as TRL).

The G completions of a group share one prompt, and the prompt is usually most of the tokens
(a ~115-token chat prompt against ~60-token answers). `completion_logprobs` therefore runs
each *distinct* prompt through the model once, copies its KV cache to the rows that share it
(an indexing op, so gradients flow back into the prompt's activations), and then runs only the
completion tokens. The result equals the plain full-sequence forward (tested) at a fraction
of the cost; `share_prompts=False` gives the plain forward.

`bucketed_logprobs` is what the trainer calls: one prompt pass over the batch's distinct
prompts, then the completions in buckets of similar length (`buckets.plan_buckets`), each
padded only to its own longest row and reading the one prompt pass (its cache rows are
gathered per bucket, the pass itself is not repeated); rows come back in their original order
with zeros at padding positions. Before the prompt pass was shared, each bucket re-ran its own
prompts: on `smarttuner bench`'s configuration that was ~6,800 token positions per training
pass for ~4,800 real ones. Same first step (48 completions), one process per run, bf16, ad
hoc: training pass 21.4 s (mean of 4 runs) before, 17.6-19.3 s after (with
`buckets.CALL_OVERHEAD_TOKENS` 64-128); reference pass 5.9-7.0 s before, 4.6-5.3 s after.

Where the model's output head is a plain linear map, the log-probabilities are taken from the
last hidden states chunk by chunk (`fused_head.token_logprobs`) instead of from full logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import Cache, DynamicLayer

from smarttuner import fsdp
from smarttuner.grpo.buckets import plan_buckets
from smarttuner.grpo.fused_head import plain_head, token_logprobs
from smarttuner.rollout.types import positions_from_mask


def selective_log_softmax(
    logits: torch.Tensor, index: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """log_softmax(logits / temperature)[..., index] without materialising the full log-softmax.

    logits [N, T, V], index [N, T] -> [N, T]; row by row to bound peak memory. The rows come
    from `unbind` (whose backward is one stack), not `logits[row]` (whose backward writes each
    row's gradient into its own zero-filled [N, T, V] tensor: 9 s of a 40 s training pass)."""
    rows = []
    for row_logits, row_index in zip(logits.unbind(0), index.unbind(0), strict=True):
        row_logits = row_logits.to(torch.promote_types(row_logits.dtype, torch.float32))  # [T, V]
        if temperature != 1.0:
            row_logits = row_logits / temperature
        picked = row_logits.gather(-1, row_index.unsqueeze(-1)).squeeze(-1)  # [T]
        rows.append(picked - torch.logsumexp(row_logits, dim=-1))
    return torch.stack(rows)


def _features(model, head, **inputs) -> torch.Tensor:  # [N, T, d] hidden or [N, T, V] logits
    """The model's last hidden states when `head` is used separately, else its logits."""
    if head is not None:
        return model.get_decoder()(**inputs).last_hidden_state
    return model(**inputs).logits


def _full_forward(model, head, prompt_ids, prompt_mask, completion_ids, completion_mask):
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # [N, P+C]
    mask = torch.cat([prompt_mask, completion_mask], dim=1)  # [N, P+C]
    width = completion_ids.shape[1]
    keep = {} if head is not None else {"logits_to_keep": width + 1}
    return _features(
        model,
        head,
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=positions_from_mask(mask),
        use_cache=False,
        **keep,
    )[:, -width - 1 : -1]  # [N, C, ·]: position P-1+t predicts completion token t


@dataclass
class PromptPass:
    """The distinct prompts of a batch run through the model once: each layer's keys and
    values, and the features at their last position (which predict completion token 0)."""

    keys: list[torch.Tensor]  # per layer [U, H_kv, P, D]
    values: list[torch.Tensor]
    first: torch.Tensor  # [U, ·]
    mask: torch.Tensor  # [U, P] left-padded

    @property
    def last_position(self) -> torch.Tensor:  # [U, 1]
        return positions_from_mask(self.mask)[:, -1:]


def prompt_pass(model, head, u_ids, u_mask, max_rows: int | None = None) -> PromptPass:
    """Run the prompts `max_rows` at a time (bounding the forward's transient memory) and join
    the parts (a differentiable concatenation)."""
    positions = positions_from_mask(u_mask)
    keep = {} if head is not None else {"logits_to_keep": 1}
    step = max_rows or len(u_ids)
    parts = []
    for start in range(0, len(u_ids), step):
        rows = slice(start, start + step)
        cache = DynamicCache()
        first = _features(
            model,
            head,
            input_ids=u_ids[rows],
            attention_mask=u_mask[rows],
            position_ids=positions[rows],
            past_key_values=cache,
            use_cache=True,
            **keep,
        )[:, -1]
        parts.append((cache, first))
    layers = range(len(parts[0][0].layers))
    return PromptPass(
        keys=[torch.cat([c.layers[i].keys for c, _ in parts]) for i in layers],
        values=[torch.cat([c.layers[i].values for c, _ in parts]) for i in layers],
        first=torch.cat([f for _, f in parts]),
        mask=u_mask,
    )


def _cache_rows(prompts: PromptPass, rows: torch.Tensor) -> Cache:
    """A new cache holding `rows` of the prompt pass (a differentiable gather; the pass is
    untouched, so several buckets can read it)."""
    layers = []
    for keys, values in zip(prompts.keys, prompts.values, strict=True):
        picked = DynamicLayer()
        picked.lazy_initialization(keys, values)
        picked.keys = keys.index_select(0, rows)
        picked.values = values.index_select(0, rows)
        layers.append(picked)
    return Cache(layers=layers)


def completion_pass(model, head, prompts: PromptPass, prompt_of, completion_ids, completion_mask):
    """Features predicting every completion token, for rows answering prompts `prompt_of` [N]
    of `prompts`: only the completion tokens run, against the prompts' cached keys/values."""
    cache = _cache_rows(prompts, prompt_of)
    mask = torch.cat([prompts.mask[prompt_of], completion_mask], dim=1)  # [N, P+C]
    steps = torch.arange(completion_ids.shape[1], device=completion_ids.device)
    positions = prompts.last_position[prompt_of] + 1 + steps  # [N, C]
    rest = _features(
        model,
        head,
        input_ids=completion_ids,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
    )[:, :-1]  # [N, C-1, ·]: completion position t predicts token t+1
    return torch.cat([prompts.first[prompt_of].unsqueeze(1), rest], dim=1)  # [N, C, ·]


def _distinct_prompts(prompt_ids, prompt_mask):
    """([U, P] ids, [U, P] mask, [N] index of each row's prompt), columns that are padding in
    every prompt dropped."""
    rows = torch.cat([prompt_ids, prompt_mask], dim=1)  # [N, 2P]
    unique, inverse = torch.unique(rows, dim=0, return_inverse=True)  # [U, 2P], [N]
    width = prompt_ids.shape[1]
    u_ids, u_mask = unique[:, :width], unique[:, width:]
    start = int(u_mask.any(0).long().argmax()) if u_mask.numel() else 0
    return u_ids[:, start:], u_mask[:, start:], inverse


def _shared_prompt(model, head, prompt_ids, prompt_mask, completion_ids, completion_mask):
    u_ids, u_mask, prompt_of = _distinct_prompts(prompt_ids, prompt_mask)
    prompts = prompt_pass(model, head, u_ids, u_mask)
    return completion_pass(model, head, prompts, prompt_of, completion_ids, completion_mask)


def _head_logprobs(features, head, completion_ids, completion_mask, temperature):
    """[N, C] log-probs of the completion tokens from features ([N, C, d] with a fused head,
    else logits); 0 at padding with the fused head."""
    t = temperature if temperature > 0 else 1.0
    if head is None:
        return selective_log_softmax(features, completion_ids, t)
    keep = completion_mask.bool()  # [N, C]: only real completion tokens go through the head
    picked = token_logprobs(features[keep], head.weight, completion_ids[keep], t)  # [M]
    out = torch.zeros(keep.shape, dtype=picked.dtype, device=features.device)
    return out.masked_scatter(keep, picked)


def _fused_head(model: PreTrainedModel, fused: bool | None) -> torch.nn.Linear | None:
    """The output head to apply chunk by chunk (`fused_head`), or None for the logits path:
    not asked for, a head that is not a plain linear map, or a sharded model (whose
    parameters are gathered by the root module's forward)."""
    if fused is False or fsdp.is_sharded(model):
        return None
    head = plain_head(model)
    if fused and head is None:
        raise ValueError("fused=True needs a plain linear output head")
    return head


def completion_logprobs(
    model: PreTrainedModel,
    prompt_ids: torch.Tensor,  # [N, P] left-padded
    prompt_mask: torch.Tensor,  # [N, P]
    completion_ids: torch.Tensor,  # [N, C] right-padded
    completion_mask: torch.Tensor,  # [N, C]
    temperature: float = 1.0,
    share_prompts: bool = True,
    fused: bool | None = None,
) -> torch.Tensor:  # [N, C]
    """log π(completion token t | prompt, earlier tokens) for every completion position.

    `fused` (default: where the head allows it) computes them from the hidden states chunk by
    chunk without materialising the logits; the result is 0 at padding positions then."""
    device = model.device
    args = [t.to(device) for t in (prompt_ids, prompt_mask, completion_ids, completion_mask)]
    head = _fused_head(model, fused)
    forward = _shared_prompt if share_prompts else _full_forward
    features = forward(model, head, *args)  # [N, C, d] or [N, C, V]
    return _head_logprobs(features, head, args[2], args[3], temperature)


def bucketed_logprobs(
    model: PreTrainedModel,
    prompt_ids: torch.Tensor,  # [N, P] left-padded
    prompt_mask: torch.Tensor,  # [N, P]
    completion_ids: torch.Tensor,  # [N, C] right-padded
    completion_mask: torch.Tensor,  # [N, C]
    temperature: float = 1.0,
    max_rows: int | None = None,
) -> torch.Tensor:  # [N, C], 0 at padding
    """`completion_logprobs` with the distinct prompts run once for the whole batch and the
    completions bucket by bucket (rows of similar length, at most `max_rows` per forward), each
    bucket reading the one prompt pass; differentiable, rows in their original order."""
    n, width = completion_ids.shape
    device = model.device
    completion_ids, completion_mask = completion_ids.to(device), completion_mask.to(device)
    head = _fused_head(model, None)
    u_ids, u_mask, prompt_of = _distinct_prompts(prompt_ids.to(device), prompt_mask.to(device))
    prompts = prompt_pass(model, head, u_ids, u_mask, max_rows)
    lengths = completion_mask.sum(1).tolist()
    plan = plan_buckets(lengths, max_rows or n)
    pieces = []
    for bucket in plan:
        idx = torch.tensor(bucket, device=device)
        w = max(1, max(lengths[r] for r in bucket))
        ids, mask = completion_ids[idx, :w], completion_mask[idx, :w]
        features = completion_pass(model, head, prompts, prompt_of[idx], ids, mask)
        logprobs = _head_logprobs(features, head, ids, mask, temperature)  # [b, w]
        pieces.append(F.pad(logprobs, (0, width - w)) * completion_mask[idx].to(logprobs))
    order = torch.tensor([r for bucket in plan for r in bucket])
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(n)
    return torch.cat(pieces)[inverse.to(pieces[0].device)]
