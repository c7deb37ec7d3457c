"""The four rewards of the GSM8K GRPO recipe, for the output format
`<start_working_out>…<end_working_out><SOLUTION>…</SOLUTION>` (tags configurable).

    match_format_exactly        3.0 for working then solution, each tag once; else 0
    match_format_approximately  +0.5 per tag present exactly once, -0.5 per missing/repeated
    check_answer                3.0 exact, 1.5 within 10 %, 0.5 within 20 %, -0.5 wrong,
                                0 without a solution block
    check_numbers               1.5 when the first number in the solution equals the gold,
                                -0.5 when it differs, 0 without one; None for a non-numeric gold

Departures from the recipe's code, each so that a right answer is not missed or a hedge not
paid: answers are compared as numbers (`1,000` = `1000.0`, signs and decimals kept) and, with
`math-verify` installed, as equivalent math (`\\frac{1}{2}` = `0.5`); `check_answer` reads any
`<SOLUTION>` block rather than only a perfectly formatted completion, but two blocks with
different answers count as wrong; `check_numbers` reads negative numbers. The format tags
default to the task's own (`gsm8k` params), else the recipe's; every score is a parameter.
"""

from __future__ import annotations

import re
from typing import Any

from smarttuner.rewards.base import RewardFn, register_reward
from smarttuner.rewards.columns import check_params, column
from smarttuner.tasks.base import Task
from smarttuner.tasks.gsm8k import (
    SolutionFormat,
    answers_equal,
    math_verify_functions,
    math_verify_parse,
)
from smarttuner.tasks.numbers import parse_number

TAG_PARAMS = tuple(SolutionFormat.__dataclass_fields__)
_FIRST_NUMBER = re.compile(r"[-\u2212]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)")


def solution_format(task: Task | None, params: dict[str, Any]) -> SolutionFormat:
    """The task's format (a `gsm8k` task carries one) with any tag given in `params` replaced."""
    base = getattr(task, "format", None)
    if not isinstance(base, SolutionFormat):
        base = SolutionFormat()
    tags = {name: params.get(name, getattr(base, name)) for name in TAG_PARAMS}
    return SolutionFormat(**tags)


@register_reward("match_format_exactly")
def match_format_exactly(task: Task | None = None, **params: Any) -> RewardFn:
    """`score` (3.0) when the completion is exactly working then solution, else 0."""
    check_params("match_format_exactly", params, (*TAG_PARAMS, "score"))
    fmt, score = solution_format(task, params), float(params.get("score", 3.0))

    def match_format_exactly(
        prompts: list[str], completions: list[str], **_: Any
    ) -> list[float | None]:
        return [score if fmt.is_exact(c) else 0.0 for c in completions]

    return match_format_exactly


@register_reward("match_format_approximately")
def match_format_approximately(task: Task | None = None, **params: Any) -> RewardFn:
    """+`per_tag` (0.5) for each of the four tags present exactly once, −`per_tag` for each
    missing or repeated: from −2 to +2 with the defaults."""
    check_params("match_format_approximately", params, (*TAG_PARAMS, "per_tag"))
    fmt, per_tag = solution_format(task, params), float(params.get("per_tag", 0.5))

    def match_format_approximately(
        prompts: list[str], completions: list[str], **_: Any
    ) -> list[float | None]:
        return [
            sum(per_tag if c.count(tag) == 1 else -per_tag for tag in fmt.tags) for c in completions
        ]

    return match_format_approximately


_CHECK_ANSWER_SCORES = {"exact": 3.0, "close": 1.5, "near": 0.5, "wrong": -0.5, "missing": 0.0}


@register_reward("check_answer")
def check_answer(task: Task | None = None, **params: Any) -> RewardFn:
    """Grade the solution against the `answer` column: `exact` 3.0; within `close_tolerance`
    (10 %) of the gold 1.5; within `near_tolerance` (20 %) 0.5; otherwise `wrong` −0.5;
    `missing` 0.0 when there is no solution block."""
    allowed = (*TAG_PARAMS, *_CHECK_ANSWER_SCORES, "close_tolerance", "near_tolerance")
    check_params("check_answer", params, (*allowed, "use_math_verify"))
    fmt = solution_format(task, params)
    scores = {k: float(params.get(k, v)) for k, v in _CHECK_ANSWER_SCORES.items()}
    close = float(params.get("close_tolerance", 0.1))
    near = float(params.get("near_tolerance", 0.2))
    if not 0 <= close <= near:
        raise ValueError(
            f"reward 'check_answer': need 0 <= close_tolerance ({close}) <= near_tolerance ({near})"
        )
    use_mv = bool(params.get("use_math_verify", True))
    if use_mv:
        math_verify_functions()  # warns once, now, when math-verify is missing

    def grade(completion: str, gold: str) -> float:
        solutions = fmt.solutions(completion)
        if not solutions:
            return scores["missing"]
        guess = solutions[-1]
        if any(not answers_equal(s, guess, use_math_verify=False) for s in solutions[:-1]):
            return scores["wrong"]  # two different answers: a hedge is not an answer
        if answers_equal(guess, gold, use_mv):
            return scores["exact"]
        value, target = numeric_value(guess, use_mv), parse_number(gold)
        if value is None or target is None or target == 0:
            return scores["wrong"]
        error = abs(value - target) / abs(target)
        if error <= close:
            return scores["close"]
        if error <= near:
            return scores["near"]
        return scores["wrong"]

    def check_answer(
        prompts: list[str], completions: list[str], **columns: Any
    ) -> list[float | None]:
        gold = column("check_answer", "answer", len(completions), columns)
        return [grade(c, str(g)) for c, g in zip(completions, gold, strict=True)]

    return check_answer


@register_reward("check_numbers")
def check_numbers(task: Task | None = None, **params: Any) -> RewardFn:
    """`correct` (1.5) when the first number after the last solution tag equals the gold
    answer, `wrong` (−0.5) when it differs, 0 when there is none; None for a non-numeric gold.
    Like the recipe, a missing closing tag does not matter here."""
    check_params("check_numbers", params, (*TAG_PARAMS, "correct", "wrong"))
    fmt = solution_format(task, params)
    correct, wrong = float(params.get("correct", 1.5)), float(params.get("wrong", -0.5))

    def grade(completion: str, gold: str) -> float | None:
        target = parse_number(gold)
        if target is None:
            return None
        value = first_number(completion, fmt)
        if value is None:
            return 0.0
        return correct if value == target else wrong

    def check_numbers(
        prompts: list[str], completions: list[str], **columns: Any
    ) -> list[float | None]:
        gold = column("check_numbers", "answer", len(completions), columns)
        return [grade(c, str(g)) for c, g in zip(completions, gold, strict=True)]

    return check_numbers


def first_number(completion: str, fmt: SolutionFormat) -> float | None:
    """The first number after the last solution-start tag (up to its end tag, if any)."""
    _, found, rest = completion.rpartition(fmt.solution_start)
    if not found:
        return None
    rest = rest.split(fmt.solution_end, 1)[0]
    match = _FIRST_NUMBER.search(rest)
    return None if match is None else parse_number(match.group(0).rstrip(","))


def numeric_value(text: str, use_math_verify: bool) -> float | None:
    """`text` as one number (`parse_number`), else math-verify's reading of it when that is a
    plain number (`\\frac{3}{4}` -> 0.75); None otherwise."""
    value = parse_number(text)
    if value is not None or not use_math_verify:
        return value
    parsed = math_verify_parse(text)
    if not parsed or not getattr(parsed[0], "is_number", False):
        return None
    try:
        return float(parsed[0])
    except (TypeError, ValueError):  # a complex or symbolic number
        return None
