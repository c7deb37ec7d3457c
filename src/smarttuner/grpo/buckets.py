"""Which completions to run through the model together, so that padding costs little.

A batch of completions is right-padded to its longest row: with lengths from 20 to 128 tokens
(one truncated sample is enough) most of the forward and backward runs on padding.
`plan_buckets` splits the rows into buckets of similar length, each padded only to its own
longest row; a bucket costs its padded tokens plus the fixed cost of one more forward call.
The prompts do not enter the plan: `logprobs.bucketed_logprobs` runs each distinct prompt
once for the whole batch and every bucket reads that pass. Pure function: it sees lengths
only.
"""

from __future__ import annotations

from collections.abc import Sequence

# The fixed cost of one more forward call (Python and per-op overhead, small matmuls), in
# token-positions. Measured on `smarttuner bench`'s bf16 configuration, the first step's
# training pass (same 48 completions; one process per run, ad hoc): 16 -> 23.3 s (mean of 4
# runs: many one- and two-row buckets), 64 -> 19.0 (3), 96 -> 17.6 (1), 128 -> 18.9 (2).
CALL_OVERHEAD_TOKENS = 96


def bucket_cost(rows: Sequence[int], lengths: Sequence[int]) -> int:
    """Token-positions one forward over `rows` computes: every row padded to the longest
    completion, plus the call overhead."""
    return len(rows) * max(lengths[r] for r in rows) + CALL_OVERHEAD_TOKENS


def plan_buckets(lengths: Sequence[int], max_rows: int) -> list[list[int]]:
    """Partition row indices into buckets of at most `max_rows` rows that minimise the summed
    `bucket_cost`, over splits of the rows ordered by length. Exact dynamic program over those
    contiguous splits, O(N · max_rows); N is a batch (tens to hundreds of rows).

    lengths[i]: completion tokens of row i."""
    n = len(lengths)
    if n == 0:
        return []
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    order = sorted(range(n), key=lambda i: (lengths[i], i))
    best = [0] + [n * max(lengths) + (n + 1) * CALL_OVERHEAD_TOKENS] * n  # above any plan
    cut = [0] * (n + 1)  # where the last bucket of the best plan for the first j rows starts
    for j in range(1, n + 1):
        longest = lengths[order[j - 1]]  # rows are sorted: the bucket's last row is its longest
        for i in range(j - 1, max(j - max_rows, 0) - 1, -1):  # bucket = order[i:j]
            cost = best[i] + (j - i) * longest + CALL_OVERHEAD_TOKENS
            if cost < best[j]:
                best[j], cut[j] = cost, i
    buckets = []
    j = n
    while j > 0:
        buckets.append(order[cut[j] : j])
        j = cut[j]
    return buckets[::-1]
