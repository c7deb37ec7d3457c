"""Length buckets: the plan is a partition, respects max_rows, is optimal over contiguous splits
(checked against brute force), and splits only when padding saved outweighs a prompt forward."""

from __future__ import annotations

import itertools
import random

import pytest

from smarttuner.grpo.buckets import CALL_OVERHEAD_TOKENS, bucket_cost, plan_buckets


def _brute_force(lengths, prompt_of, prompt_tokens, max_rows) -> float:
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], prompt_of[i], i))
    best = float("inf")
    n = len(order)
    for cuts in itertools.product([0, 1], repeat=n - 1):
        bounds = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [n]
        parts = [order[a:b] for a, b in itertools.pairwise(bounds)]
        if any(len(p) > max_rows for p in parts):
            continue
        best = min(best, sum(bucket_cost(p, lengths, prompt_of, prompt_tokens) for p in parts))
    return best


@pytest.mark.parametrize("seed", range(20))
def test_plan_is_an_optimal_partition(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 9)
    prompts = rng.randint(1, 3)
    lengths = [rng.choice([0, 3, 20, 60, 128, rng.randint(1, 128)]) for _ in range(n)]
    prompt_of = [rng.randrange(prompts) for _ in range(n)]
    prompt_tokens = [rng.randint(5, 120) for _ in range(prompts)]
    max_rows = rng.randint(1, n)
    plan = plan_buckets(lengths, prompt_of, prompt_tokens, max_rows)
    assert sorted(r for b in plan for r in b) == list(range(n))
    assert all(1 <= len(b) <= max_rows for b in plan)
    cost = sum(bucket_cost(b, lengths, prompt_of, prompt_tokens) for b in plan)
    assert cost == _brute_force(lengths, prompt_of, prompt_tokens, max_rows)


def test_splits_a_long_straggler_off_but_not_equal_lengths() -> None:
    # one group of 6: five short answers and one truncated at 128 tokens
    lengths = [30, 32, 31, 29, 30, 128]
    plan = plan_buckets(lengths, [0] * 6, [115], max_rows=16)
    assert sorted(map(sorted, plan)) == [[0, 1, 2, 3, 4], [5]]
    # equal lengths: splitting only repeats the prompt
    assert plan_buckets([40] * 6, [0] * 6, [115], max_rows=16) == [[0, 1, 2, 3, 4, 5]]


def test_cost_counts_each_distinct_prompt_once() -> None:
    cost = bucket_cost([0, 1, 2], [10, 20, 5], [0, 0, 1], [100, 7])
    assert cost == 3 * 20 + 100 + 7 + CALL_OVERHEAD_TOKENS


def test_empty_and_invalid() -> None:
    assert plan_buckets([], [], [], 4) == []
    with pytest.raises(ValueError, match="max_rows"):
        plan_buckets([1], [0], [1], 0)
