"""DAPO dynamic sampling: which groups a round keeps, and the sampling rounds of one iteration
merged into one `Collected` (end to end on the tiny model: test_grpo_smoke.py)."""

from __future__ import annotations

import pytest
import torch

from smarttuner.grpo.buffer import Experience
from smarttuner.grpo.experience import Collected, groups_to_train, kept_groups, merge_rounds

G = 2


def round_of(rewards: list[float], seconds: float, room: int) -> Collected:
    """A round of len(rewards) / G groups; the first `room` groups with unequal rewards become
    experience (as `collect_experience` keeps them)."""
    groups = torch.tensor(rewards).view(-1, G)
    keep = groups_to_train((groups == groups[:, :1]).all(dim=1), True, room)
    experiences, samples = [], []
    for i, r in enumerate(rewards):
        group = i // G
        samples.append({"reward": r, "components": {"correctness": r}})
        if keep[group]:
            experiences.append(
                Experience(torch.tensor([1]), torch.tensor([i]), None, None, r - 0.5, 3, group)
            )
    stats = {
        "accuracy": sum(rewards) / len(rewards),
        "completion_length": 10.0,
        "time/generate": seconds,
        "experiences_kept": len(experiences),
    }
    return Collected(experiences, stats, rewards, [r - 0.5 for r in rewards], samples)


def test_a_round_keeps_the_first_groups_with_signal_that_fit() -> None:
    flat = torch.tensor([True, False, False, True, False])
    assert groups_to_train(flat, False, None).tolist() == [True] * 5
    assert groups_to_train(flat, True, None).tolist() == [False, True, True, False, True]
    assert groups_to_train(flat, True, 2).tolist() == [False, True, True, False, False]
    assert groups_to_train(flat, True, 0).tolist() == [False] * 5  # this process has enough


def test_merge_keeps_the_first_groups_with_signal_and_logs_every_sample() -> None:
    first = round_of([1, 1, 0, 1, 0, 0], seconds=2.0, room=2)  # groups 0, 2 flat; 1 kept
    second = round_of([0, 1, 1, 0, 1, 1], seconds=3.0, room=1)  # group 0 kept; 1 no room
    assert kept_groups(first) == 1 and kept_groups(second) == 1

    merged = merge_rounds([first, second], group_size=G)

    # round 1's group 1, then round 2's group 0 (renumbered 3 + 0); round 2's group 1 found no room
    assert [e.group for e in merged.experiences] == [1, 1, 3, 3]
    assert [int(e.completion_ids) for e in merged.experiences] == [2, 3, 0, 1]
    assert merged.rewards == first.rewards + second.rewards
    assert len(merged.samples) == 12
    stats = merged.stats
    assert stats["sampling_rounds"] == 2
    assert stats["experiences_kept"] == 4
    assert stats["time/generate"] == 5.0
    assert stats["tokens_per_second"] == pytest.approx(120 / 5.0)
    assert stats["accuracy"] == pytest.approx(7 / 12)
    assert stats["reward_mean"] == pytest.approx(7 / 12)
    assert stats["reward/correctness_mean"] == pytest.approx(7 / 12)


def test_merge_of_rounds_that_keep_too_few_groups_keeps_them_all() -> None:
    rounds = [round_of([0, 1, 0, 0], 1.0, room=2), round_of([0, 0, 1, 1], 1.0, room=1)]
    merged = merge_rounds(rounds, group_size=G)
    assert [e.group for e in merged.experiences] == [0, 0]
    assert merged.stats["sampling_rounds"] == 2
