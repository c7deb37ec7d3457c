"""The dtype an op's matmuls run in: autocast's when autocast is on for the device, else the
tensor's own. Hand-written kernels (the fused output head, the grouped attention) use it to
compute as autocast would have. And which autocast to run with on this machine: bf16 only
pays on CPUs that multiply it natively."""

from __future__ import annotations

import functools
import logging

import torch

log = logging.getLogger(__name__)


def compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """Autocast's dtype on `tensor`'s device if autocast is on there, else `tensor.dtype`."""
    device = tensor.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return tensor.dtype


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX). There, bf16
    autocast trains about twice as fast as float32; without it torch falls back to generic
    kernels that are several times slower than float32 (docs/RESULTS.md, "bf16 on a CPU
    without native bf16")."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_autocast(setting: str, device_type: str, fast_bf16: bool | None = None) -> str:
    """The autocast dtype name to run with: `auto` is `bfloat16` on a CPU with native bf16
    (`fast_bf16`, default: `cpu_has_fast_bf16()`) and `none` elsewhere (float32 on other
    CPUs; on a GPU the weights are already bf16/fp16 under `model.dtype: auto`). Any other
    setting is kept; `bfloat16` on a CPU without native bf16 logs a warning once."""
    if device_type != "cpu" or setting not in ("auto", "bfloat16"):
        return "none" if setting == "auto" else setting
    fast = cpu_has_fast_bf16() if fast_bf16 is None else fast_bf16
    if setting == "auto":
        _say_auto(fast)
        return "bfloat16" if fast else "none"
    if not fast:
        _warn_slow_bf16()
    return setting


@functools.cache
def _say_auto(fast: bool) -> None:
    if fast:
        log.info("autocast auto: bfloat16 (this CPU multiplies bf16 natively)")
    else:
        log.info("autocast auto: float32 (this CPU has no native bf16: no AVX512-BF16 or AMX)")


@functools.cache
def _warn_slow_bf16() -> None:
    log.warning(
        "autocast bfloat16 on a CPU without native bf16 (no AVX512-BF16 or AMX): matmuls run "
        "several times slower than float32 here; set model.autocast=auto (or none)"
    )
