"""A process reward for worked arithmetic: the share of the equations written in the reasoning
that are true.

    "17 * 9 = 90 + 63 = 153; 170 + 153 = 313"   ->  2 of 3 links true  ->  0.667

Every chain `A = B = C …` whose sides are plain arithmetic (integers or decimals, `+ - * /`,
parentheses, unary minus, thousands separators) is checked link by link, each side evaluated
exactly (fractions, so `0.1 + 0.2 = 0.3` holds). Text between the chains (words, units,
`x = 3` with a variable) is ignored. A completion with no checkable equation scores `empty`
(0.0 by default), so leaving the working out does not pay.

Why: the final-answer reward tells a group which samples ended right, not which step went
wrong; on multi-step arithmetic most wrong answers have one false step (a times-table or
units-column slip), and this reward separates a sample with one slip from one with several.
Use it beside the task's reward with a small weight; alone it pays for true but useless
equations.
"""

from __future__ import annotations

import ast
import itertools
import operator
import re
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

from smarttuner.formatting import parse_completion
from smarttuner.rewards.base import RewardFn, register_reward
from smarttuner.rewards.columns import check_params

_NUMBER = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"  # 1,000.5 too
_SIDE = rf"[-(\s]*{_NUMBER}\)*(?:\s*[-+*/]\s*[-(\s]*{_NUMBER}\)*)*"
_CHAIN = re.compile(rf"(?<![\w.,]){_SIDE}(?:\s*=\s*{_SIDE})+(?![\w.]\d)")
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def evaluate(expression: str) -> Fraction:
    """The exact value of `+ - * /` arithmetic on numbers; ValueError for anything else."""
    try:
        tree = ast.parse(expression.replace(",", "").strip(), mode="eval").body
    except SyntaxError:
        raise ValueError(f"not arithmetic: {expression!r}") from None
    return _value(tree)


def _value(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _value(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Div) and right == 0:
            raise ValueError("division by zero")
        return _BINARY[type(node.op)](left, right)
    raise ValueError(f"not arithmetic: {ast.dump(node)}")


def located_links(text: str) -> Iterator[tuple[str, str, bool, int]]:
    """`links`, each with the offset in `text` where its right side starts (the first
    character written after the `=`)."""
    for match in _CHAIN.finditer(text):
        raw = match.group(0).split("=")
        starts = list(itertools.accumulate((len(side) + 1 for side in raw), initial=0))
        sides = [side.strip() for side in raw]
        try:
            values = [evaluate(side) for side in sides]
        except ValueError:
            continue  # unbalanced parentheses, division by zero: not a checkable chain
        for k, ((left, a), (right, b)) in enumerate(
            itertools.pairwise(zip(sides, values, strict=True)), start=1
        ):
            offset = starts[k] + len(raw[k]) - len(raw[k].lstrip())
            yield left, right, a == b, match.start() + offset


def links(text: str) -> Iterator[tuple[str, str, bool]]:
    """(left side, right side, holds) for every checkable link of every `A = B = …` chain in
    `text`, in order: the first with `holds` False is the first wrong step."""
    for left, right, holds, _ in located_links(text):
        yield left, right, holds


def first_false_offset(text: str) -> int | None:
    """Where in `text` the first false link's right side starts (the slip is written from
    there on), or None when every checkable link holds."""
    return next((at for _, _, holds, at in located_links(text) if not holds), None)


def check_equations(text: str) -> tuple[int, int]:
    """(true links, checked links) over every `A = B = …` chain in `text`."""
    verdicts = [holds for _, _, holds in links(text)]
    return sum(verdicts), len(verdicts)


def reasoning_text(completion: str) -> str:
    """The text inside <think>…</think> when present, else the whole completion."""
    think = parse_completion(completion).think
    return completion if think is None else think


@register_reward("true_equations")
def true_equations_reward(task: Any = None, **params: Any) -> RewardFn:
    """Share of the reasoning's equation links that are true; `empty` (0.0) without any."""
    check_params("true_equations", params, ("empty",))
    empty = float(params.get("empty", 0.0))

    def true_equations(prompts: list[str], completions: list[str], **_: Any) -> list[float | None]:
        scores: list[float | None] = []
        for completion in completions:
            true, total = check_equations(reasoning_text(completion))
            scores.append(true / total if total else empty)
        return scores

    return true_equations
