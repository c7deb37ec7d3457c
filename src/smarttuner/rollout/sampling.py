"""Next-token sampling: temperature then nucleus (top-p), matching transformers'
`TemperatureLogitsWarper` + `TopPLogitsWarper` so both engines sample the same distribution."""

from __future__ import annotations

import torch


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:  # [B, V]
    """Set to -inf every token outside the smallest set whose probability reaches `top_p`."""
    if top_p >= 1.0:
        return logits
    sorted_logits, sorted_idx = torch.sort(logits, descending=False)  # [B, V]
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1.0 - top_p)
    remove_sorted[..., -1:] = False  # always keep the most likely token
    remove = remove_sorted.scatter(1, sorted_idx, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def sample_next(
    logits: torch.Tensor,  # [B, V] last-position logits
    temperature: float,
    top_p: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:  # [B]
    """Greedy at temperature 0, else a draw from softmax(top_p(logits / temperature))."""
    if temperature <= 0.0:
        return logits.argmax(dim=-1)
    filtered = top_p_filter(logits.float() / temperature, top_p)
    probs = filtered.softmax(dim=-1)
    if generator is not None and generator.device != probs.device:
        # a CPU generator keeps runs reproducible across devices; sample where it lives
        draw = torch.multinomial(probs.cpu(), num_samples=1, generator=generator)
        return draw.squeeze(1).to(probs.device)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
