"""Paired before/after comparisons on the same eval prompts.

Two models scored on the same prompts differ by noise and by what changed. Counting, prompt by
prompt, where the second model does better and where worse (greedy: right vs wrong; sampled:
more vs fewer right samples out of n) and testing the split with an exact two-sided sign test
says whether a change in accuracy is more than the prompts that happened to flip.
"""

from __future__ import annotations

from math import comb
from typing import Any


def sign_test_p(wins: int, losses: int) -> float:
    """Exact two-sided sign test: the chance of a split at least this uneven if a prompt that
    changed was equally likely to change either way (ties dropped). 1.0 when nothing changed."""
    if wins < 0 or losses < 0:
        raise ValueError(f"wins and losses must be >= 0, got {wins} and {losses}")
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def changed(before: list[int] | list[bool], after: list[int] | list[bool]) -> tuple[int, int]:
    """Prompts whose score went up and went down from `before` to `after` (same prompts, same
    order; a bool counts as 0/1)."""
    if len(before) != len(after):
        raise ValueError(f"paired results need the same prompts: {len(before)} != {len(after)}")
    up = sum(a > b for b, a in zip(before, after, strict=True))
    down = sum(a < b for b, a in zip(before, after, strict=True))
    return up, down


def paired_greedy(before: list[bool], after: list[bool]) -> dict[str, Any]:
    """Prompts `after` gets right that `before` got wrong (gained), the reverse (lost), and the
    sign test of that split."""
    gained, lost = changed(before, after)
    return {"gained": gained, "lost": lost, "sign_test_p": sign_test_p(gained, lost)}


def greedy_record(before: list[bool], after: list[bool]) -> dict[str, Any]:
    """`paired_greedy` with the per-prompt results it was computed from (a results JSON's
    `paired.greedy`)."""
    return {**paired_greedy(before, after), "correct": {"baseline": before, "final": after}}


def paired_sampled(before: list[int], after: list[int], num_samples: int) -> dict[str, Any]:
    """Right samples per prompt (of `num_samples`) before and after: prompts with more right
    samples after, with fewer, the mean change in per-prompt sample accuracy, and the sign test."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    more, fewer = changed(before, after)
    change = sum(after) - sum(before)
    return {
        "prompts_more_right": more,
        "prompts_fewer_right": fewer,
        "mean_change": change / (num_samples * max(len(before), 1)),
        "sign_test_p": sign_test_p(more, fewer),
    }


def paired_text(paired: dict[str, Any]) -> str:
    """One or two lines for the console under a before/after table (`against`, when present,
    names the column the final model was paired with)."""
    greedy = paired["greedy"]
    against = f" against {paired['against']}" if "against" in paired else ""
    lines = [
        f"paired greedy{against}: {greedy['gained']} prompts gained, {greedy['lost']} lost "
        f"(sign test p = {greedy['sign_test_p']:.3g})"
    ]
    if "sampled" in paired:
        s = paired["sampled"]
        lines.append(
            f"paired sampled: {s['prompts_more_right']} prompts with more right samples, "
            f"{s['prompts_fewer_right']} with fewer, sample accuracy {s['mean_change']:+.3f} "
            f"(sign test p = {s['sign_test_p']:.3g})"
        )
    return "\n".join(lines)
