"""Programmatic reasoning traces written from a task's own structure: no model, no network.

Each writer turns an `Example` (with the generator's metadata) into a short, correct
`<think>…</think><answer>…</answer>` completion. Tasks without a writer fall back to a
minimal trace that restates the question's request and gives the gold answer, which still
teaches the format.
"""

from __future__ import annotations

from collections.abc import Callable

from smarttuner.registry import Registry
from smarttuner.sft.arithmetic_trace import arithmetic_reasoning
from smarttuner.sft.logic_trace import logic_reasoning
from smarttuner.sft.records import SFTRecord, format_target
from smarttuner.sft.syllogism_trace import syllogism_reasoning
from smarttuner.tasks.base import Example
from smarttuner.tasks.numbers import parse_decimal

TraceWriter = Callable[[Example], str]
_WRITERS: Registry[TraceWriter] = Registry("trace writer")
register_trace = _WRITERS.register


@register_trace("syllogism")
def syllogism_trace(example: Example) -> str:
    """The rule-by-rule check of `syllogism_reasoning` (the label is the generator's own)."""
    meta = example.metadata
    reasoning, follows = syllogism_reasoning(meta["premise1"], meta["premise2"], meta["conclusion"])
    valid = bool(meta.get("is_valid", example.answer.strip().lower() == "yes"))
    if follows != valid:
        raise ValueError(f"syllogism trace disagrees with the task's label: {meta}")
    return format_target(reasoning, "Yes" if valid else "No")


@register_trace("arithmetic")
def arithmetic_trace(example: Example) -> str:
    """Both steps worked out, products through place values (`arithmetic_reasoning`)."""
    m = example.metadata
    reasoning, result = arithmetic_reasoning(m["a"], m["op1"], m["b"], m["op2"], m["c"])
    if result != m["result"]:
        raise ValueError(f"arithmetic trace disagrees with the task's answer: {m}")
    return format_target(reasoning, str(result))


@register_trace("propositional_logic")
def propositional_logic_trace(example: Example) -> str:
    """Two premises joined by conjunction introduction (`logic_reasoning`)."""
    m = example.metadata
    reasoning, conclusion = logic_reasoning(list(m["premises"]), list(m["variables"]))
    return format_target(reasoning, conclusion)


@register_trace("gsm_symbolic")
def gsm_symbolic_trace(example: Example) -> str:
    """The generator's own worked solution (`metadata["answer_cot"]`, GSM8K style) without its
    closing `#### N` line; that line must equal the gold answer."""
    lines = example.metadata["answer_cot"].strip().splitlines()
    final = lines[-1].removeprefix("####").strip() if lines[-1].startswith("####") else None
    gold = parse_decimal(example.answer)
    if final is None or gold is None or parse_decimal(final) != gold:
        raise ValueError(f"gsm_symbolic solution does not end in the gold answer: {lines[-1]!r}")
    return format_target(" ".join(line.strip() for line in lines[:-1]), example.answer)


def generic_trace(example: Example) -> str:
    reasoning = "I work through the problem step by step and check the result."
    return format_target(reasoning, example.answer)


def has_trace_writer(task_name: str) -> bool:
    return task_name in _WRITERS


def programmatic_records(task_name: str, examples: list[Example]) -> list[SFTRecord]:
    """One record per example, from the task's writer (or the generic fallback)."""
    writer = _WRITERS.get(task_name, generic_trace)
    return [SFTRecord(e.question, writer(e), source="programmatic") for e in examples]
