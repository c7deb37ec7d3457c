"""DAPO dynamic sampling: rounds of one iteration merged into one `Collected`, and a run that
samples further prompt batches until it has kept enough groups with unequal rewards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from smarttuner.config import GRPOConfig, build_config
from smarttuner.grpo.buffer import Experience
from smarttuner.grpo.experience import Collected, kept_groups, merge_rounds
from smarttuner.grpo.trainer import train_grpo

G = 2


def round_of(rewards: list[float], seconds: float) -> Collected:
    """A round of len(rewards) / G groups; the groups with unequal rewards become experience."""
    experiences, samples = [], []
    for i, r in enumerate(rewards):
        group = i // G
        samples.append({"reward": r, "components": {"correctness": r}})
        if len(set(rewards[group * G : group * G + G])) > 1:
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


def test_merge_keeps_the_first_groups_with_signal_and_logs_every_sample() -> None:
    first = round_of([1, 1, 0, 1, 0, 0], seconds=2.0)  # groups 0, 2 flat; group 1 kept
    second = round_of([0, 1, 1, 0, 1, 1], seconds=3.0)  # groups 0, 1 kept, group 2 flat
    assert kept_groups(first) == 1 and kept_groups(second) == 2

    merged = merge_rounds([first, second], num_groups=2, group_size=G)

    # round 1's group 1, then round 2's group 0 (renumbered 3 + 0); round 2's group 1 is cut
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
    rounds = [round_of([0, 1, 0, 0], 1.0), round_of([0, 0, 1, 1], 1.0)]
    merged = merge_rounds(rounds, num_groups=2, group_size=G)
    assert [e.group for e in merged.experiences] == [0, 0]
    assert merged.stats["sampling_rounds"] == 2


pytestmark = pytest.mark.usefixtures("single_thread")


def run(model_dir: str, out: Path, **overrides) -> list[dict]:
    values = {
        "model.name": model_dir,
        "task.name": "arithmetic",
        "num_iterations": 2,
        "grpo.exploration_batchsize": 2,
        "grpo.num_generations": 4,
        "grpo.beta": 0.0,
        "grpo.skip_zero_std_groups": True,
        "optim.batch_size": 4,
        "optim.gradient_accumulation_steps": 1,
        "generation.max_new_tokens": 8,
        "eval.num_examples": 2,
        "eval.baseline": False,
        "output_dir": str(out),
        **overrides,
    }
    train_grpo(build_config(GRPOConfig, None, values))
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["phase"] == "grpo"]


def test_flat_rewards_use_every_refill_round(tiny_model_dir: str, tmp_path: Path) -> None:
    # the random tiny model never earns correctness or format: every group is flat, so each
    # iteration samples 1 + 2 batches of 2 prompts and keeps nothing
    records = run(tiny_model_dir, tmp_path / "flat", **{"grpo.refill_rounds": 2})
    for record in records:
        assert record["sampling_rounds"] == 3
        assert record["zero_std_fraction"] == 1.0
        assert record["experiences_kept"] == 0
    rows = [json.loads(line) for line in (tmp_path / "flat" / "completions.jsonl").open()]
    assert len(rows) == 2 * 3 * 2 * 4  # iterations × rounds × prompts × G, every sample logged
    assert len({r["prompt"] for r in rows}) == 12  # each round drew the next prompts


def test_a_batch_with_enough_signal_is_not_refilled(
    tiny_model_dir: str, tmp_path: Path, monkeypatch
) -> None:
    # a reward of the completion's length differs between samples: no group is flat
    (tmp_path / "length_reward.py").write_text(
        "def length(prompts, completions, **kwargs):\n"
        "    return [len(c) / 50.0 for c in completions]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    records = run(
        tiny_model_dir,
        tmp_path / "spread",
        **{"grpo.refill_rounds": 2, "rewards": [{"name": "length_reward:length"}]},
    )
    for record in records:
        assert record["sampling_rounds"] == 1
        assert record["experiences_kept"] == 8
        assert record["zero_std_fraction"] == 0.0
