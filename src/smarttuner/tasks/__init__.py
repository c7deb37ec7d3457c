"""Tasks: generators of questions with gold answers, and their graders.

`get_task(name, **params)` builds a task by name: a registered task first (`arithmetic` and the
reasoning-gym datasets registered in `smarttuner.tasks.reasoning_gym`), then any other
reasoning-gym dataset name.
"""

from __future__ import annotations

from typing import Any

from smarttuner.tasks import (  # noqa: F401  (imported to register)
    arithmetic,
    gsm8k,
    reasoning_gym,
    sentence_completion,
)
from smarttuner.tasks.base import _TASKS, Example, Task, register_task, registered_tasks
from smarttuner.tasks.reasoning_gym import ReasoningGymTask, dataset_names


def get_task(name: str, **params: Any) -> Task:
    """The task called `name`, configured with `params`."""
    factory = _TASKS.get(name)
    if factory is not None:
        return factory(**params)
    if name in dataset_names():
        return ReasoningGymTask(name, **params)
    raise ValueError(
        f"unknown task {name!r}: registered tasks are {', '.join(registered_tasks())}, "
        "and any reasoning-gym dataset name is accepted (see list_tasks())."
    )


def list_tasks() -> list[str]:
    """Registered task names and every reasoning-gym dataset name, sorted and deduplicated."""
    return sorted(set(registered_tasks()) | set(dataset_names()))


__all__ = [
    "Example",
    "ReasoningGymTask",
    "Task",
    "get_task",
    "list_tasks",
    "register_task",
    "registered_tasks",
]
