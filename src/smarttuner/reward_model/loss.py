"""The Bradley–Terry preference loss and pairwise accuracy: pure functions of reward tensors.

Bradley & Terry (1952); as a reward-model loss, Ouyang et al. 2022 (InstructGPT), eq. 1:
`loss = −log σ(r_chosen − r_rejected)`, averaged over pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Mean of −log σ(r_c − r_r) over the pairs; `chosen`, `rejected`: [B] -> scalar."""
    return -F.logsigmoid(chosen - rejected).mean()


def pairwise_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    """Share of pairs whose chosen completion scores strictly higher ([B], [B] -> float)."""
    if chosen.numel() == 0:
        return float("nan")
    return (chosen > rejected).float().mean().item()
