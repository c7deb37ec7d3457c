"""Length buckets: the plan is a partition, respects max_rows, is optimal over contiguous splits
(checked against brute force), and splits only when the padding saved outweighs a call."""

from __future__ import annotations

import itertools
import random

import pytest

from smarttuner.grpo.buckets import CALL_OVERHEAD_TOKENS, bucket_cost, plan_buckets


def _brute_force(lengths, max_rows) -> float:
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    best = float("inf")
    n = len(order)
    for cuts in itertools.product([0, 1], repeat=n - 1):
        bounds = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [n]
        parts = [order[a:b] for a, b in itertools.pairwise(bounds)]
        if any(len(p) > max_rows for p in parts):
            continue
        best = min(best, sum(bucket_cost(p, lengths) for p in parts))
    return best


@pytest.mark.parametrize("seed", range(20))
def test_plan_is_an_optimal_partition(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 9)
    lengths = [rng.choice([0, 3, 20, 60, 128, rng.randint(1, 128)]) for _ in range(n)]
    max_rows = rng.randint(1, n)
    plan = plan_buckets(lengths, max_rows)
    assert sorted(r for b in plan for r in b) == list(range(n))
    assert all(1 <= len(b) <= max_rows for b in plan)
    assert sum(bucket_cost(b, lengths) for b in plan) == _brute_force(lengths, max_rows)


def test_splits_a_long_straggler_off_but_not_equal_lengths() -> None:
    # one group of 6: five short answers and one truncated at 128 tokens
    plan = plan_buckets([30, 32, 31, 29, 30, 128], max_rows=16)
    assert sorted(map(sorted, plan)) == [[0, 1, 2, 3, 4], [5]]
    # nearly equal lengths: one more call costs more than the padding it saves
    assert plan_buckets([40, 41, 40, 39, 40, 42], max_rows=16) == [[3, 0, 2, 4, 1, 5]]


def test_cost_is_padded_rows_plus_the_call() -> None:
    assert bucket_cost([0, 1, 2], [10, 20, 5]) == 3 * 20 + CALL_OVERHEAD_TOKENS


def test_empty_and_invalid() -> None:
    assert plan_buckets([], 4) == []
    with pytest.raises(ValueError, match="max_rows"):
        plan_buckets([1], 0)
