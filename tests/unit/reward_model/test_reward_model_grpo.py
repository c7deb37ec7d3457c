"""A reward model trained on task-made pairs drives one GRPO step on the tiny policy."""

from __future__ import annotations

import json
import math
from pathlib import Path

from smarttuner.config import GRPOConfig, build_config
from smarttuner.grpo.trainer import train_grpo
from smarttuner.reward_model import RewardModelConfig, train_reward_model


def test_grpo_step_with_a_trained_reward_model(tmp_path: Path, tiny_model_dir: str) -> None:
    rm_cfg = RewardModelConfig.model_validate(
        {
            "model": {"name": tiny_model_dir, "device": "cpu"},
            "data": {"task": "arithmetic", "num_pairs": 16},
            "train": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-3},
            "output_dir": str(tmp_path / "rm"),
        }
    )
    model_dir = train_reward_model(rm_cfg)["model_dir"]
    cfg = build_config(
        GRPOConfig,
        None,
        {
            "model.name": tiny_model_dir,
            "model.device": "cpu",
            "task.name": "arithmetic",
            "num_iterations": 1,
            "grpo.exploration_batchsize": 2,
            "grpo.num_generations": 4,
            "grpo.buffer_size": 8,
            "optim.batch_size": 8,
            "optim.gradient_accumulation_steps": 1,
            "generation.max_new_tokens": 8,
            "eval.num_examples": 2,
            "eval.baseline": False,
            "eval.max_new_tokens": 4,
            "output_dir": str(tmp_path / "grpo"),
            "rewards": [
                {"name": "reward_model", "weight": 1.0, "params": {"model": model_dir}},
                {"name": "correctness", "weight": 0.0},
            ],
        },
    )
    train_grpo(cfg)
    lines = (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()
    step = next(r for r in map(json.loads, lines) if r["phase"] == "grpo")
    assert math.isfinite(step["loss"])
    assert math.isfinite(step["reward/reward_model_mean"])
    assert step["reward/reward_model_std"] > 0  # distinct completions get distinct scores
    assert step["reward_std"] > 0
