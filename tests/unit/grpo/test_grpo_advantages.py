"""Group-relative advantages: centring per group, the three scales, flat groups, bad shapes.

Hand-worked case, G = 3, epsilon = 1e-4:

    group 0: [1, 2, 3] mean 2, centred [-1, 0, 1], unbiased std 1
    group 1: [0, 0, 6] mean 2, centred [-2, -2, 4], unbiased std sqrt((4+4+16)/2) = sqrt(12)
    batch:   all six, mean 2, deviations [-1, 0, 1, -2, -2, 4], unbiased std sqrt(26/5)
"""

from __future__ import annotations

import math

import pytest
import torch

from smarttuner.grpo.advantages import group_advantages, zero_std_groups

EPS = 1e-4
REWARDS = torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0, 6.0])
CENTRED = [-1.0, 0.0, 1.0, -2.0, -2.0, 4.0]


def test_group_scale_by_hand() -> None:
    adv = group_advantages(REWARDS, 3, "group", EPS)
    s0, s1 = 1.0 + EPS, math.sqrt(12.0) + EPS
    expected = [-1 / s0, 0.0, 1 / s0, -2 / s1, -2 / s1, 4 / s1]
    assert adv.tolist() == pytest.approx(expected, abs=1e-6)


def test_batch_scale_by_hand() -> None:
    adv = group_advantages(REWARDS, 3, "batch", EPS)
    s = math.sqrt(26.0 / 5.0) + EPS
    assert adv.tolist() == pytest.approx([c / s for c in CENTRED], abs=1e-6)


def test_no_scale_is_just_centred() -> None:
    assert group_advantages(REWARDS, 3, "none", EPS).tolist() == pytest.approx(CENTRED)


def test_each_group_sums_to_zero_and_order_is_kept() -> None:
    gen = torch.Generator().manual_seed(0)
    rewards = torch.rand(4 * 5, generator=gen)
    for scale in ("group", "batch", "none"):
        adv = group_advantages(rewards, 5, scale).view(4, 5)
        torch.testing.assert_close(adv.sum(dim=1), torch.zeros(4), atol=1e-5, rtol=0)
        # within a group the best reward gets the largest advantage
        assert torch.equal(adv.argmax(dim=1), rewards.view(4, 5).argmax(dim=1))


def test_all_equal_group_gives_zero_advantages() -> None:
    rewards = torch.tensor([0.7, 0.7, 0.7, 0.0, 1.0, 0.0])
    adv = group_advantages(rewards, 3, "group", EPS)
    assert adv[:3].tolist() == [0.0, 0.0, 0.0]  # 0 / (0 + eps), not NaN
    assert torch.isfinite(adv).all()
    assert adv[3:].abs().sum() > 0


def test_all_equal_group_is_exactly_zero_when_its_mean_rounds() -> None:
    # eight float32 copies of 1.3 average to 1.3 - 1 ulp; divided by epsilon that was -1.2e-3
    # for every sample of a group without signal
    rewards = torch.full((8,), 1.2999999523162842)
    assert (rewards - rewards.mean()).abs().max() > 0
    for scale in ("group", "batch", "none"):
        assert group_advantages(rewards, 8, scale, EPS).tolist() == [0.0] * 8


def test_all_equal_batch_is_finite_zero() -> None:
    adv = group_advantages(torch.ones(6), 3, "batch", EPS)
    assert adv.tolist() == [0.0] * 6


def test_zero_std_groups() -> None:
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.5, 0.5, 0.2, 0.3])
    assert zero_std_groups(rewards, 2).tolist() == [True, True, True, False]
    assert zero_std_groups(REWARDS, 3).tolist() == [False, False]


@pytest.mark.parametrize("rewards", [torch.zeros(5), torch.zeros(2, 3)])
def test_rewards_that_do_not_split_into_groups(rewards: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(rewards, 3)


def test_unknown_scale_names_it() -> None:
    with pytest.raises(ValueError, match="'median'"):
        group_advantages(REWARDS, 3, "median")
