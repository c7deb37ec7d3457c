"""Per-token log-probabilities of completion tokens under a model (policy, old policy or
reference), computed with logits divided by the sampling temperature, as the samples were
drawn (the same convention as TRL)."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits)[..., index] without materialising the full log-softmax.

    logits [N, T, V], index [N, T] -> [N, T]; row by row to bound peak memory."""
    out = torch.empty(index.shape, dtype=torch.float32, device=logits.device)
    for row in range(logits.shape[0]):
        row_logits = logits[row].float()  # [T, V]
        picked = row_logits.gather(-1, index[row].unsqueeze(-1)).squeeze(-1)  # [T]
        out[row] = picked - torch.logsumexp(row_logits, dim=-1)
    return out


def completion_logprobs(
    model: PreTrainedModel,
    prompt_ids: torch.Tensor,  # [N, P] left-padded
    prompt_mask: torch.Tensor,  # [N, P]
    completion_ids: torch.Tensor,  # [N, C] right-padded
    completion_mask: torch.Tensor,  # [N, C]
    temperature: float = 1.0,
) -> torch.Tensor:  # [N, C]
    """log π(completion token t | prompt, earlier tokens) for every completion position."""
    device = model.device
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1).to(device)  # [N, P+C]
    mask = torch.cat([prompt_mask, completion_mask], dim=1).to(device)  # [N, P+C]
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # [N, P+C]
    width = completion_ids.shape[1]
    logits = model(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=positions,
        use_cache=False,
        logits_to_keep=width + 1,
    ).logits[:, :-1]  # [N, C, V]: position P-1+t predicts completion token t
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    return selective_log_softmax(logits, completion_ids.to(device))
