"""Rewards: protocol, registry, built-in rewards and the weighted sum."""

from smarttuner.rewards import (  # noqa: F401  (imported to register their rewards)
    embedding,
    equations,
    math,
    perplexity,
    reward_model,
    verifiable,
)
from smarttuner.rewards.base import (
    RewardError,
    RewardFn,
    build_reward,
    register_reward,
    registered_rewards,
)
from smarttuner.rewards.combine import NamedReward, RewardResult, component_stats, compute_rewards

__all__ = [
    "NamedReward",
    "RewardError",
    "RewardFn",
    "RewardResult",
    "build_reward",
    "component_stats",
    "compute_rewards",
    "register_reward",
    "registered_rewards",
]
