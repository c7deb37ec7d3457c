"""Attention for CPU runs: PyTorch SDPA with grouped key/value heads kept grouped.

Models such as SmolLM2-135M have fewer key/value heads than query heads (3 against 9).
transformers' "sdpa" attention uses SDPA's `enable_gqa` only when no attention mask is passed
(on CUDA a mask sends GQA to the slow math kernel); with the padding mask every batched
rollout and log-prob forward carries, it copies K and V out to all query heads first
(`repeat_kv`) — for every layer, in the forward and again in the backward. On the CPU the
flash kernel handles a mask and grouped heads together, so "sdpa_gqa" passes them straight to
it. Everything else (one query token, no mask, no grouping, position biases) goes to
transformers' own `sdpa_attention_forward`.

In bfloat16 and float16 (also under autocast, where rotary embeddings leave queries and keys
in float32 and SDPA casts them down) the CPU flash kernel's backward is slow: for the training
forwards of `smarttuner bench` (9 query heads over 3 key/value heads, ~100-250 keys) it takes
~3x its forward. There "sdpa_gqa" computes attention as two batched matmuls, the query heads
of a group stacked against their shared key/value head (`grouped_matmul_attention`; no copies
of K and V), with a float32 softmax, as transformers' "eager" attention does in low
precision, as long as the score tensor is small enough to keep for the backward
(`GROUPED_MAX_SCORES`). In an ad-hoc A/B on the bench's configuration (alternating in one
process, same 48 completions) the bf16 training pass took 22.2 / 22.9 / 23.5 s against
25.2 / 26.1 / 26.4 s with the flash kernel; log-probs differ from a float32 forward by 0.0219
nats per token on average against 0.0218 with the flash kernel. In float32 the flash kernel
is as fast or faster and stays, and one-token decode steps keep transformers' path (as fast
there). Greedy decoding in bf16 therefore rounds differently from stock "sdpa" and may pick
other tokens; in float32 nothing changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from smarttuner.precision import compute_dtype

NAME = "sdpa_gqa"
LOW_PRECISION = (torch.bfloat16, torch.float16)  # dtypes that take `grouped_matmul_attention`
# Largest [B, H, T, S] score tensor for `grouped_matmul_attention`. Its backward keeps the
# probabilities (~6 bytes an entry: float32 softmax output, bfloat16 copy) in every layer
# where the flash kernel keeps O(T); 4M entries is ~25 MB a layer, ~0.75 GB over 30 layers.
# The bench's largest training forward has 3.4M; longer sequences go to the flash kernel.
GROUPED_MAX_SCORES = 1 << 22


def sdpa_gqa_forward(
    module: torch.nn.Module,
    query: torch.Tensor,  # [B, H, T, D]
    key: torch.Tensor,  # [B, H_kv, S, D]
    value: torch.Tensor,  # [B, H_kv, S, D]
    attention_mask: torch.Tensor | None,  # [B, 1, T, S] or None
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:  # [B, T, H, D]
    grouped = getattr(module, "num_key_value_groups", 1) > 1
    special = kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None
    if attention_mask is None or query.shape[2] == 1 or not grouped or special:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs
        )
    dtype = compute_dtype(query)  # autocast's: rotary embeddings leave q, k in float32
    scores = query.shape[0] * query.shape[1] * query.shape[2] * key.shape[2]
    if (
        dtype in LOW_PRECISION
        and attention_mask.dtype == torch.bool
        and scores <= GROUPED_MAX_SCORES
    ):
        query, key, value = (t.to(dtype) for t in (query, key, value))
        out = grouped_matmul_attention(query, key, value, attention_mask, scaling)
        return out.transpose(1, 2).contiguous(), None
    out = F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=dropout,
        scale=scaling,
        enable_gqa=True,
    )  # [B, H, T, D]
    return out.transpose(1, 2).contiguous(), None


def grouped_matmul_attention(
    query: torch.Tensor,  # [B, H, T, D]
    key: torch.Tensor,  # [B, H_kv, S, D]
    value: torch.Tensor,  # [B, H_kv, S, D]
    mask: torch.Tensor,  # [B, 1, T, S] bool, True where a query may attend
    scaling: float | None = None,
) -> torch.Tensor:  # [B, H, T, D]
    """softmax(q k^T * scaling, masked) v with query head h reading key/value head h // (H /
    H_kv), as `repeat_kv` arranges it, without repeating K and V: the G query heads of a group
    are stacked along the query axis of one matmul. Scores are in the inputs' dtype, the
    softmax in at least float32. A query row with no allowed key (left padding) gets a
    uniform average instead of NaN; such rows are padding and nothing reads them."""
    batch, heads, length, dim = query.shape
    kv_heads, keys = key.shape[1], key.shape[2]
    groups = heads // kv_heads
    scale = dim**-0.5 if scaling is None else scaling
    stacked = (query * scale).reshape(batch, kv_heads, groups * length, dim)
    scores = (stacked @ key.transpose(-1, -2)).view(batch, kv_heads, groups, length, keys)
    scores = scores.masked_fill(~mask.unsqueeze(1), torch.finfo(scores.dtype).min)
    precision = torch.promote_types(scores.dtype, torch.float32)
    probs = torch.softmax(scores, dim=-1, dtype=precision).to(value.dtype)
    out = probs.view(batch, kv_heads, groups * length, keys) @ value  # [B, H_kv, G*T, D]
    return out.view(batch, heads, length, dim)


def _sdpa_has_gqa() -> bool:
    """SDPA's `enable_gqa` arrived in torch 2.5."""
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    return (major, minor) >= (2, 5)


def register() -> None:
    """Make "sdpa_gqa" a known attention implementation (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, sdpa_gqa_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def use_grouped_sdpa(model: torch.nn.Module, device: torch.device) -> None:
    """Switch a CPU model that uses "sdpa" to "sdpa_gqa" (other devices and implementations,
    e.g. "eager" asked for explicitly, are left alone)."""
    config = getattr(model, "config", None)
    if device.type != "cpu" or getattr(config, "_attn_implementation", None) != "sdpa":
        return
    if not hasattr(model, "set_attn_implementation") or not _sdpa_has_gqa():
        return  # older transformers / torch < 2.5: keep "sdpa"
    register()
    model.set_attn_implementation(NAME)
