"""Reward models: train one from preference pairs (Bradley–Terry), score (prompt, completion)
pairs with it. The `reward_model` reward (`smarttuner.rewards.reward_model`) uses them in GRPO."""

from smarttuner.reward_model.config import RewardModelConfig
from smarttuner.reward_model.data import PreferencePair, load_pairs, task_pairs
from smarttuner.reward_model.scoring import load_reward_model, score_pairs
from smarttuner.reward_model.train import train_reward_model

__all__ = [
    "PreferencePair",
    "RewardModelConfig",
    "load_pairs",
    "load_reward_model",
    "score_pairs",
    "task_pairs",
    "train_reward_model",
]
