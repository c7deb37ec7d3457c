"""The reward protocol and registry.

A reward function has TRL's signature, `f(prompts, completions, **columns) -> list[float | None]`:
batched, one value per completion, `None` meaning "does not apply to this sample". Dataset
columns (`answer`, `question`, task metadata …) arrive as keyword lists aligned with the
completions, so reward functions written for TRL work unchanged.

Rewards that need the task (the verifier) or options are built by a registered *factory*:
`factory(task=..., **params) -> RewardFn`. A user's own function is named 'module:function';
its `params` are bound as keyword arguments.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any, Protocol

from smarttuner.registry import Registry
from smarttuner.tasks.base import Task


class RewardFn(Protocol):
    def __call__(
        self, prompts: list[str], completions: list[str], **columns: Any
    ) -> list[float | None]: ...


RewardFactory = Callable[..., RewardFn]
_REWARDS: Registry[RewardFactory] = Registry("reward")
register_reward = _REWARDS.register
"""Register a reward factory under a name; registering a name twice is an error."""


class RewardError(RuntimeError):
    """A reward function raised or returned something unusable (names the reward and sample)."""


def registered_rewards() -> list[str]:
    return _REWARDS.names()


def import_user_reward(spec: str) -> Callable[..., list[float | None]]:
    """'package.module:function' -> the function (the module must be importable)."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"reward {spec!r}: cannot import module {module_name!r} ({err})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"reward {spec!r}: {module_name} has no function {attr!r}")
    return fn


def build_reward(name: str, task: Task, params: dict[str, Any]) -> RewardFn:
    """A ready reward function for a config entry: registered factory or user 'module:fn'."""
    if ":" in name:
        fn = import_user_reward(name)
        return functools.partial(fn, **params) if params else fn
    if name not in _REWARDS:
        raise ValueError(
            f"unknown reward {name!r}; registered: {', '.join(registered_rewards())}, "
            "or give your own as 'module:function'"
        )
    return _REWARDS[name](task=task, **params)
