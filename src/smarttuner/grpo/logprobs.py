"""Per-token log-probabilities of completion tokens under a model (policy, old policy or
reference), computed with logits divided by the sampling temperature, as the samples were
drawn (the same convention as TRL).

The G completions of a group share one prompt, and the prompt is usually most of the tokens
(a ~115-token chat prompt against ~60-token answers). `completion_logprobs` therefore runs
each *distinct* prompt through the model once, copies its KV cache to the rows that share it
(an indexing op, so gradients flow back into the prompt's activations), and then runs only the
completion tokens. The result equals the plain full-sequence forward (tested) at a fraction
of the cost; `share_prompts=False` gives the plain forward.

`bucketed_logprobs` is what the trainer calls: it splits a batch into buckets of similar
completion length (`buckets.plan_buckets`) so each forward is padded only to its own longest
row, and returns the rows in their original order with zeros at padding positions.

Where the model's output head is a plain linear map, the log-probabilities are taken from the
last hidden states chunk by chunk (`fused_head.token_logprobs`) instead of from full logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedModel

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


def _shared_prompt(model, head, prompt_ids, prompt_mask, completion_ids, completion_mask):
    rows = torch.cat([prompt_ids, prompt_mask], dim=1)  # [N, 2P]
    unique, inverse = torch.unique(rows, dim=0, return_inverse=True)  # [U, 2P], [N]
    width = prompt_ids.shape[1]
    u_ids, u_mask = unique[:, :width], unique[:, width:]  # [U, P]
    u_pos = positions_from_mask(u_mask)
    cache = DynamicCache()
    keep = {} if head is not None else {"logits_to_keep": 1}
    first = _features(
        model,
        head,
        input_ids=u_ids,
        attention_mask=u_mask,
        position_ids=u_pos,
        past_key_values=cache,
        use_cache=True,
        **keep,
    )[:, -1]  # [U, ·]: predicts completion token 0
    cache.batch_select_indices(inverse)  # [N] rows, differentiable gather
    mask = torch.cat([prompt_mask, completion_mask], dim=1)  # [N, P+C]
    steps = torch.arange(completion_ids.shape[1], device=completion_ids.device)
    positions = u_pos[inverse, -1:] + 1 + steps  # [N, C]
    rest = _features(
        model,
        head,
        input_ids=completion_ids,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
    )[:, :-1]  # [N, C-1, ·]: completion position t predicts token t+1
    return torch.cat([first[inverse].unsqueeze(1), rest], dim=1)  # [N, C, ·]


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
    t = temperature if temperature > 0 else 1.0
    if head is None:
        return selective_log_softmax(features, args[2], t)
    keep = args[3].bool()  # [N, C]: only real completion tokens go through the head
    picked = token_logprobs(features[keep], head.weight, args[2][keep], t)  # [M]
    out = torch.zeros(keep.shape, dtype=picked.dtype, device=device)
    return out.masked_scatter(keep, picked)


def bucketed_logprobs(
    model: PreTrainedModel,
    prompt_ids: torch.Tensor,  # [N, P] left-padded
    prompt_mask: torch.Tensor,  # [N, P]
    completion_ids: torch.Tensor,  # [N, C] right-padded
    completion_mask: torch.Tensor,  # [N, C]
    temperature: float = 1.0,
    max_rows: int | None = None,
) -> torch.Tensor:  # [N, C], 0 at padding
    """`completion_logprobs` run bucket by bucket (rows of similar completion length, at most
    `max_rows` per forward); differentiable, rows in their original order."""
    n, width = completion_ids.shape
    lengths = completion_mask.sum(1).tolist()
    unique, prompt_of = torch.unique(
        torch.cat([prompt_ids, prompt_mask], dim=1), dim=0, return_inverse=True
    )
    prompt_tokens = unique[:, prompt_ids.shape[1] :].sum(1).tolist()
    plan = plan_buckets(lengths, prompt_of.tolist(), prompt_tokens, max_rows or n)
    pieces = []
    for bucket in plan:
        idx = torch.tensor(bucket)
        w = max(1, max(lengths[r] for r in bucket))
        mask = prompt_mask[idx]
        start = int(mask.any(0).long().argmax())  # drop columns that are padding in every row
        logprobs = completion_logprobs(
            model,
            prompt_ids[idx, start:],
            mask[:, start:],
            completion_ids[idx, :w],
            completion_mask[idx, :w],
            temperature,
        )  # [b, w]
        pieces.append(F.pad(logprobs, (0, width - w)) * completion_mask[idx].to(logprobs))
    order = torch.tensor([r for bucket in plan for r in bucket])
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(n)
    return torch.cat(pieces)[inverse.to(pieces[0].device)]
