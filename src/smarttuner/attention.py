"""Attention for CPU runs: PyTorch SDPA with grouped key/value heads kept grouped.

Models such as SmolLM2-135M have fewer key/value heads than query heads (3 against 9).
transformers' "sdpa" attention uses SDPA's `enable_gqa` only when no attention mask is passed
(on CUDA a mask sends GQA to the slow math kernel); with the padding mask every batched
rollout and log-prob forward carries, it copies K and V out to all query heads first
(`repeat_kv`) — for every layer, in the forward and again in the backward. On the CPU the
flash kernel handles a mask and grouped heads together, so "sdpa_gqa" passes them straight to
it. Everything else (one query token, no mask, no grouping, position biases) goes to
transformers' own `sdpa_attention_forward`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.integrations.sdpa_attention import sdpa_attention_forward

NAME = "sdpa_gqa"


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
