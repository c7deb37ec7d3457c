"""Trainer wiring that is a pure function: when the old log-probs forward can be skipped."""

from __future__ import annotations

import pytest

from smarttuner.grpo.trainer import policy_is_sampler_during_training


@pytest.mark.parametrize(
    ("mu", "buffer", "per_iter", "minibatches", "k", "skip", "expected"),
    [
        (1, 8, 8, 2, 2, False, True),  # one window per pass, closing at its end
        (1, 8, 8, 2, 4, False, True),  # the window closes at the end of every 2nd pass
        (1, 8, 8, 1, 1, False, True),  # one minibatch, one step, after it
        (1, 8, 8, 2, 1, False, False),  # a step after minibatch 1: minibatch 2 is off-policy
        (1, 8, 8, 2, 3, False, False),  # windows straddle passes: a step inside pass 2
        (2, 8, 8, 2, 2, False, False),  # μ = 2: the second pass reuses stale samples
        (1, 16, 8, 2, 2, False, False),  # the buffer replays the previous iteration
        (1, 8, 8, 2, 2, True, False),  # skipped groups leave room for old completions
    ],
)
def test_policy_is_sampler_during_training(
    mu: int, buffer: int, per_iter: int, minibatches: int, k: int, skip: bool, expected: bool
) -> None:
    assert policy_is_sampler_during_training(mu, buffer, per_iter, minibatches, k, skip) is expected
