"""The dtype an op's matmuls run in: autocast's when autocast is on for the device, else the
tensor's own. Hand-written kernels (the fused output head, the grouped attention) use it to
compute as autocast would have."""

from __future__ import annotations

import torch


def compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """Autocast's dtype on `tensor`'s device if autocast is on there, else `tensor.dtype`."""
    device = tensor.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return tensor.dtype
