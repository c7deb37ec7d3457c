"""Merging per-process iteration records into one (distributed.merge_stats)."""

import math

from smarttuner.distributed import merge_stats


def test_token_means_are_weighted_by_trained_tokens() -> None:
    # process 0 trained 30 tokens at KL 0.1, process 1 trained 10 tokens at KL 0.5: the global
    # token mean is (3 + 5) / 40 = 0.2, not the unweighted 0.3
    merged = merge_stats(
        [
            {"kl": 0.1, "clip_fraction": 0.0, "trained_tokens": 30.0, "loss": 1.0},
            {"kl": 0.5, "clip_fraction": 0.4, "trained_tokens": 10.0, "loss": 3.0},
        ]
    )
    assert math.isclose(merged["kl"], 0.2)
    assert math.isclose(merged["clip_fraction"], 0.1)
    assert merged["trained_tokens"] == 40.0
    assert merged["loss"] == 2.0  # per-sequence means of equal shares: averaged


def test_a_process_that_trained_nothing_does_not_dilute_token_means() -> None:
    merged = merge_stats(
        [
            {"kl": 0.3, "trained_tokens": 12.0, "time/train": 1.0},
            {"kl": float("nan"), "trained_tokens": 0.0, "time/train": 2.0},
        ]
    )
    assert merged["kl"] == 0.3
    assert merged["time/train"] == 2.0


def test_records_without_token_counts_fall_back_to_plain_means() -> None:
    merged = merge_stats([{"kl": 0.1, "experiences_kept": 3}, {"kl": 0.3, "experiences_kept": 5}])
    assert math.isclose(merged["kl"], 0.2)
    assert merged["experiences_kept"] == 8
