"""Which tokens of a completion its advantage applies to (`grpo.blame`).

GRPO gives every token of a completion the same advantage. When a group's samples share most
of their working and one of them slips at a late step, its negative advantage also pushes down
every correct step it wrote before the slip — the same steps its group-mates are pushed up
for. `blame: first_false_equation` keeps a negative advantage only from the first false
`A = B` link on (checked exactly by `rewards.equations`; the slip is written from that link's
right side): the tokens before it get advantage 0. Positive advantages, and negative ones
whose completion has no false link (a wrong copy into the answer, a missing format), stay on
the whole sequence. This is the process supervision of Lightman et al. (2023) applied as
credit, with the step checker in place of a learned process reward model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase as Tokenizer

from smarttuner.rewards.equations import first_false_offset

BLAME = ("sequence", "first_false_equation")


def token_at(ids: Sequence[int], tokenizer: Tokenizer, offset: int) -> int:
    """Index of the token that writes character `offset` of the decoded `ids` (the smallest k
    whose prefix `ids[:k + 1]` decodes past it; binary search over prefix decodes)."""

    def decoded(k: int) -> int:
        return len(tokenizer.decode(list(ids[:k]), skip_special_tokens=True))

    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if decoded(mid) > offset:
            hi = mid
        else:
            lo = mid + 1
    return lo - 1


def credit_start(text: str, ids: Sequence[int], advantage: float, tokenizer: Tokenizer) -> int:
    """First token the advantage applies to under `first_false_equation` (0 = all of them)."""
    if advantage >= 0:
        return 0
    offset = first_false_offset(text)
    return 0 if offset is None else token_at(ids, tokenizer, offset)


def credit_starts(
    blame: str,
    texts: list[str],
    completion_ids: torch.Tensor,  # [N, C] right-padded
    lengths: list[int],
    advantages: list[float],
    tokenizer: Tokenizer,
) -> list[int]:
    """`credit_start` for each completion, or all 0 for `blame: sequence`."""
    if blame == "sequence":
        return [0] * len(texts)
    if blame != "first_false_equation":
        raise ValueError(f"unknown blame {blame!r}; use one of {', '.join(BLAME)}")
    return [
        credit_start(text, completion_ids[i, :n].tolist(), adv, tokenizer) if adv < 0 else 0
        for i, (text, n, adv) in enumerate(zip(texts, lengths, advantages, strict=True))
    ]


def blame_stats(starts: list[int], lengths: list[int], advantages: list[float]) -> dict[str, float]:
    """Over the completions with a negative advantage: the share whose blame starts after
    their first token, and the share of their tokens that still carry the advantage."""
    negative = [(s, n) for s, n, a in zip(starts, lengths, advantages, strict=True) if a < 0]
    if not negative:
        return {"blame/located_fraction": 0.0, "blame/token_share": 1.0}
    tokens = sum(n for _, n in negative)
    return {
        "blame/located_fraction": sum(s > 0 for s, _ in negative) / len(negative),
        "blame/token_share": sum(n - s for s, n in negative) / max(tokens, 1),
    }
