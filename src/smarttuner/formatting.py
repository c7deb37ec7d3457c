"""The `<think>…</think><answer>…</answer>` output format: the prompt that asks for it and
the parser that reads it back.

A completion is *well formatted* when it holds exactly one think block followed by exactly one
answer block, with nothing but whitespace before the think block and after the answer block.
`extract_answer` is more lenient: it returns the content of the last `<answer>` block even when
the format is not strict, so a task can still grade a sloppy but correct answer (the format
reward is what punishes sloppiness).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"

SYSTEM_PROMPT = (
    "You are a careful reasoner. First think about the problem step by step inside "
    "<think> </think> tags, then give only the final answer inside <answer> </answer> tags. "
    "Respond exactly in this format: <think> reasoning here </think><answer> final answer here "
    "</answer>"
)

_STRICT = re.compile(
    r"^\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*$",
    re.DOTALL,
)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


@dataclass(frozen=True)
class ParsedCompletion:
    """What a completion says, read leniently, and whether its format is strict."""

    think: str | None
    answer: str | None
    format_ok: bool


def parse_completion(text: str) -> ParsedCompletion:
    """Split a completion into its reasoning and its answer, and check the strict format."""
    strict = _STRICT.match(text)
    single = all(
        text.count(tag) == 1 for tag in (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
    )
    if strict and single:
        return ParsedCompletion(
            think=strict.group("think").strip(),
            answer=strict.group("answer").strip(),
            format_ok=True,
        )
    answers = _ANSWER.findall(text)
    think = None
    if THINK_OPEN in text and THINK_CLOSE in text:
        think = text.split(THINK_OPEN, 1)[1].split(THINK_CLOSE, 1)[0].strip()
    return ParsedCompletion(
        think=think, answer=answers[-1].strip() if answers else None, format_ok=False
    )


def extract_answer(text: str) -> str | None:
    """The content of the last `<answer>…</answer>` block, stripped; None when there is none."""
    return parse_completion(text).answer


def format_ok(text: str) -> bool:
    """True when the completion is exactly one think block followed by one answer block."""
    return parse_completion(text).format_ok
