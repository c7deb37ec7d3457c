"""`arithmetic`: a built-in two-step arithmetic task, `(a op1 b) op2 c`.

Small enough for a tiny model to learn on a CPU, yet it needs one intermediate result, so
step-by-step reasoning helps. The reward is graded so that early training has a signal before
answers are exactly right:

    +0.2  the completion's format is strict (`formatting.format_ok`)
    +0.2  the extracted answer is a number within ±1 of the gold answer
    +0.6  the extracted answer equals the gold answer

The parts add up, so a perfect completion scores 1.0 and an exact answer in a sloppy format 0.8.
"""

from __future__ import annotations

import operator
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from smarttuner import formatting
from smarttuner.formatting import SYSTEM_PROMPT
from smarttuner.tasks.base import Example, register_task
from smarttuner.tasks.numbers import parse_number

OPERATORS: dict[str, Callable[[int, int], int]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}

FORMAT_REWARD = 0.2
CLOSE_REWARD = 0.2
EXACT_REWARD = 0.6
CLOSE_TOLERANCE = 1.0


@register_task("arithmetic")
@dataclass(frozen=True)
class ArithmeticTask:
    """Questions `(a op1 b) op2 c` with operands drawn uniformly from [min_value, max_value]."""

    min_value: int = 1
    max_value: int = 20
    ops: Sequence[str] = ("+", "-", "*")
    name: str = field(default="arithmetic", init=False)
    system_prompt: str = field(default=SYSTEM_PROMPT, init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))
        if self.min_value > self.max_value:
            raise ValueError(
                f"min_value ({self.min_value}) must not exceed max_value ({self.max_value})."
            )
        unknown = [op for op in self.ops if op not in OPERATORS]
        if not self.ops or unknown:
            raise ValueError(
                f"ops must be a non-empty selection of {sorted(OPERATORS)}, got {list(self.ops)}."
            )

    def examples(self, seed: int, n: int) -> list[Example]:
        """`n` questions drawn from `random.Random(seed)`; a longer list extends a shorter one."""
        rng = random.Random(seed)
        return [self._make_example(rng) for _ in range(n)]

    def score(self, completion: str, example: Example) -> float:
        """Graded reward: format 0.2 + within ±1 0.2 + exact 0.6 (see the module docstring)."""
        reward = FORMAT_REWARD if formatting.format_ok(completion) else 0.0
        value = _answer_value(completion)
        if value is None:
            return reward
        gold = float(example.answer)
        if abs(value - gold) <= CLOSE_TOLERANCE:
            reward += CLOSE_REWARD
        if value == gold:
            reward += EXACT_REWARD
        return reward

    def is_correct(self, completion: str, example: Example) -> bool:
        """True when the extracted answer is numerically equal to the gold answer."""
        value = _answer_value(completion)
        return value is not None and value == float(example.answer)

    def _make_example(self, rng: random.Random) -> Example:
        a, b, c = (rng.randint(self.min_value, self.max_value) for _ in range(3))
        op1, op2 = rng.choice(self.ops), rng.choice(self.ops)
        intermediate = OPERATORS[op1](a, b)
        result = OPERATORS[op2](intermediate, c)
        expression = f"({a} {op1} {b}) {op2} {c}"
        metadata: dict[str, Any] = {
            "a": a,
            "b": b,
            "c": c,
            "op1": op1,
            "op2": op2,
            "intermediate": intermediate,
            "result": result,
            "expression": expression,
        }
        question = f"Calculate {expression}. Give the final answer as a single integer."
        return Example(question=question, answer=str(result), metadata=metadata)


def _answer_value(completion: str) -> float | None:
    """The number in the completion's answer block, or None when there is none."""
    answer = formatting.extract_answer(completion)
    return None if answer is None else parse_number(answer)
