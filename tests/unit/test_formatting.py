"""The <think>…</think><answer>…</answer> parser: strict format and lenient answer extraction."""

from __future__ import annotations

import pytest

from smarttuner.formatting import (
    SYSTEM_PROMPT,
    ParsedCompletion,
    extract_answer,
    format_ok,
    parse_completion,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>7 * 2</think><answer>14</answer>", ParsedCompletion("7 * 2", "14", True)),
        # whitespace before, between and after the blocks is allowed and stripped from contents
        (
            "\n  <think>\n a \n</think>\n\n<answer> 14 </answer>  \n",
            ParsedCompletion("a", "14", True),
        ),
        # multi-line contents
        (
            "<think>line 1\nline 2</think><answer>Yes\n</answer>",
            ParsedCompletion("line 1\nline 2", "Yes", True),
        ),
        # an empty answer block is still the format; the answer is the empty string, not None
        ("<think>x</think><answer></answer>", ParsedCompletion("x", "", True)),
        ("<think></think><answer>1</answer>", ParsedCompletion("", "1", True)),
    ],
)
def test_well_formatted(text: str, expected: ParsedCompletion) -> None:
    assert parse_completion(text) == expected
    assert format_ok(text)
    assert extract_answer(text) == expected.answer


@pytest.mark.parametrize(
    ("text", "answer", "think"),
    [
        ("<answer>14</answer>", "14", None),  # no think block
        ("<think>7 * 2 = 14</think>", None, "7 * 2 = 14"),  # no answer block
        ("<think>a</think><answer>14</answer><answer>15</answer>", "15", "a"),  # last answer
        ("<think>a</think><answer>14</answer> because it is", "14", "a"),  # text after
        ("Sure! <think>a</think><answer>14</answer>", "14", "a"),  # text before
        ("<think>a</think>so<answer>14</answer>", "14", "a"),  # text between
        ("<answer>14</answer><think>a</think>", "14", "a"),  # wrong order
        ("<think>a<think>b</think><answer>14</answer>", "14", "a<think>b"),  # two thinks
        ("<think>a</think><answer>14", None, "a"),  # answer never closed
        ("<think>a<answer>14</answer>", "14", None),  # think never closed
        ("The answer is 14.", None, None),
        ("", None, None),
        ("<THINK>a</THINK><ANSWER>14</ANSWER>", None, None),  # tags are case-sensitive
    ],
)
def test_not_well_formatted_but_read_leniently(text: str, answer: str | None, think) -> None:
    parsed = parse_completion(text)
    assert parsed.format_ok is False
    assert not format_ok(text)
    assert parsed.answer == answer
    assert extract_answer(text) == answer
    assert parsed.think == think


@pytest.mark.parametrize(
    "text",
    [
        "<think>a</think><answer>b</answer></answer>",
        "<think>a</think>x</think><answer>b</answer>",
    ],
)
def test_stray_closing_tag_is_not_the_format(text: str) -> None:
    assert not format_ok(text)


def test_system_prompt_asks_for_the_format() -> None:
    for tag in ("<think>", "</think>", "<answer>", "</answer>"):
        assert tag in SYSTEM_PROMPT
