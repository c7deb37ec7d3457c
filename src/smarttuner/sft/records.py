"""SFT training records: a question and the completion the model should learn to write."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from smarttuner.formatting import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN


@dataclass(frozen=True)
class SFTRecord:
    """`question` is the user turn; `completion` the full target (think + answer tags)."""

    question: str
    completion: str
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def format_target(reasoning: str, answer: str) -> str:
    """The target text: `<think> reasoning </think><answer> answer </answer>`."""
    think = f"{THINK_OPEN} {reasoning.strip()} {THINK_CLOSE}"
    return f"{think}{ANSWER_OPEN} {answer.strip()} {ANSWER_CLOSE}"
