"""Which completions to run through the model together, so that padding costs little.

A batch of completions is right-padded to its longest row: with lengths from 20 to 128 tokens
(one truncated sample is enough) most of the forward and backward runs on padding.
`plan_buckets` splits the rows into buckets of similar length, each padded only to its own
longest row. Every bucket runs its distinct prompts once (the shared-prompt forward of
`logprobs.py`), so splitting a group across buckets costs a prompt forward; the plan weighs
that against the padding it saves. Pure function: it sees lengths and prompt identities only.
"""

from __future__ import annotations

from collections.abc import Sequence

# The fixed cost of one more forward call (Python and per-op overhead), in token-positions.
CALL_OVERHEAD_TOKENS = 16


def bucket_cost(
    rows: Sequence[int],
    lengths: Sequence[int],
    prompt_of: Sequence[int],
    prompt_tokens: Sequence[int],
) -> int:
    """Token-positions one forward over `rows` computes: every row padded to the longest
    completion, each distinct prompt once, plus the call overhead."""
    longest = max(lengths[r] for r in rows)
    prompts = {prompt_of[r] for r in rows}
    return len(rows) * longest + sum(prompt_tokens[p] for p in prompts) + CALL_OVERHEAD_TOKENS


def plan_buckets(
    lengths: Sequence[int],
    prompt_of: Sequence[int],
    prompt_tokens: Sequence[int],
    max_rows: int,
) -> list[list[int]]:
    """Partition row indices into buckets of at most `max_rows` rows that minimise the summed
    `bucket_cost`, over splits of the rows ordered by (length, prompt). Exact dynamic program
    over those contiguous splits, O(N · max_rows); N is a batch (tens to hundreds of rows).

    lengths[i]: completion tokens of row i; prompt_of[i]: index of its prompt;
    prompt_tokens[p]: tokens of prompt p (unpadded)."""
    n = len(lengths)
    if n == 0:
        return []
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    order = sorted(range(n), key=lambda i: (lengths[i], prompt_of[i], i))
    inf = float("inf")
    best = [0.0] + [inf] * n  # best[j]: cheapest plan for the first j rows of `order`
    cut = [0] * (n + 1)  # where the last bucket of that plan starts
    for j in range(1, n + 1):
        longest = lengths[order[j - 1]]  # rows are sorted: the bucket's last row is its longest
        prompts: set[int] = set()
        prompt_cost = 0
        for i in range(j - 1, max(j - max_rows, 0) - 1, -1):  # bucket = order[i:j]
            p = prompt_of[order[i]]
            if p not in prompts:
                prompts.add(p)
                prompt_cost += prompt_tokens[p]
            cost = best[i] + (j - i) * longest + prompt_cost + CALL_OVERHEAD_TOKENS
            if cost < best[j]:
                best[j], cut[j] = cost, i
    buckets = []
    j = n
    while j > 0:
        buckets.append(order[cut[j] : j])
        j = cut[j]
    return buckets[::-1]
