"""Paired before/after comparisons: the exact sign test worked out by hand, and the counts."""

from __future__ import annotations

import pytest

from smarttuner.evaluate.paired import (
    greedy_record,
    paired_greedy,
    paired_sampled,
    paired_text,
    sign_test_p,
)


def test_sign_test_by_hand() -> None:
    # 5 changed prompts, all one way: 2 * (1/2)^5
    assert sign_test_p(5, 0) == pytest.approx(2 / 32)
    assert sign_test_p(0, 5) == pytest.approx(2 / 32)
    # 3 vs 1 of 4: 2 * (C(4,0) + C(4,1)) / 16 = 10/16
    assert sign_test_p(3, 1) == pytest.approx(10 / 16)
    # an even split caps at 1, and nothing changed is no evidence
    assert sign_test_p(2, 2) == 1.0 and sign_test_p(0, 0) == 1.0
    # the propositional-logic result in docs/RESULTS.md: 17 gained, 5 lost
    assert sign_test_p(17, 5) == pytest.approx(0.0169, abs=1e-4)
    with pytest.raises(ValueError, match=">= 0"):
        sign_test_p(-1, 2)


def test_paired_greedy_counts_flips_only() -> None:
    before = [True, True, False, False, True]
    after = [True, False, True, True, True]
    got = paired_greedy(before, after)
    assert (got["gained"], got["lost"]) == (2, 1)
    assert got["sign_test_p"] == pytest.approx(sign_test_p(2, 1))
    with pytest.raises(ValueError, match="same prompts"):
        paired_greedy([True], [True, False])


def test_paired_sampled_counts_and_mean_change() -> None:
    got = paired_sampled([0, 2, 4, 1], [1, 2, 3, 4], num_samples=4)
    assert (got["prompts_more_right"], got["prompts_fewer_right"]) == (2, 1)
    # (1 + 0 - 1 + 3) right samples more, of 4 samples x 4 prompts
    assert got["mean_change"] == pytest.approx(3 / 16)
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        paired_sampled([1], [1], 0)
    text = paired_text({"greedy": paired_greedy([False], [True]), "sampled": got})
    assert "1 prompts gained, 0 lost" in text and "sample accuracy +0.188" in text


def test_greedy_record_keeps_what_it_was_computed_from() -> None:
    record = greedy_record([True, False, False], [True, True, False])
    assert (record["gained"], record["lost"]) == (1, 0)
    assert record["correct"] == {"baseline": [True, False, False], "final": [True, True, False]}
    text = paired_text({"greedy": record, "against": "after SFT"})
    assert text.startswith("paired greedy against after SFT: 1 prompts gained, 0 lost")
