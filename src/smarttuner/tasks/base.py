"""The Task protocol and the task registry.

A task makes examples (question, gold answer, metadata) from a seed and grades completions.
Grading is a pure function of the completion text and the example, so it can run anywhere
(reward functions, evaluation, SFT data filtering).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from smarttuner.formatting import SYSTEM_PROMPT
from smarttuner.registry import Registry


@dataclass(frozen=True)
class Example:
    """One task instance. `metadata` carries whatever the generator knows (used by SFT traces)."""

    question: str
    answer: str
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Task(Protocol):
    """What every task provides. Scores are in [0, 1]; 1 means fully correct."""

    name: str
    system_prompt: str

    def examples(self, seed: int, n: int) -> list[Example]:
        """`n` examples generated deterministically from `seed`."""
        ...

    def score(self, completion: str, example: Example) -> float:
        """Graded reward in [0, 1] for a whole completion (answer extracted from its tags)."""
        ...

    def is_correct(self, completion: str, example: Example) -> bool:
        """Exact correctness of the completion's final answer (used for accuracy)."""
        ...


TaskFactory = Callable[..., Task]
_TASKS: Registry[TaskFactory] = Registry("task")
register_task = _TASKS.register


def registered_tasks() -> list[str]:
    return _TASKS.names()


__all__ = ["Example", "Task", "register_task", "registered_tasks", "SYSTEM_PROMPT", "_TASKS"]
