"""Lenient reading of numbers and light clean-up of answer text.

Models write the same number in many ways: `14`, `14.0`, `-3`, `1,000`, `= 14`, `$14$`,
`\\boxed{14}`, `14.`. `parse_number` accepts all of these and nothing else: a number followed
by words (`14 apples`) or an expression (`7 * 2`) is not a number, so a grader never credits
an answer the model did not commit to.
"""

from __future__ import annotations

import re
from decimal import Decimal

_BOXED = re.compile(r"^\\boxed\{(?P<inner>.*)\}$", re.DOTALL)
_NUMBER = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$|^[+-]?\.\d+$")
_CANONICAL = re.compile(r"^-?(?:0|[1-9]\d*)(?:\.\d+)?$")
_MINUS_SIGNS = ("\u2212", "\u2013")  # the typographic minus and the en dash


def unwrap_math(text: str) -> str:
    """Strip whitespace, one surrounding `\\boxed{…}` and surrounding `$`/`$$` delimiters."""
    text = text.strip()
    for _ in range(2):  # `$\boxed{14}$` and `\boxed{$14$}` both unwrap fully
        if len(text) >= 2 and text.startswith("$") and text.endswith("$"):
            text = text.strip("$").strip()
        boxed = _BOXED.match(text)
        if boxed:
            text = boxed.group("inner").strip()
    return text


def parse_number(text: str) -> float | None:
    """The number `text` spells, read leniently; None when it is not exactly one number.

    Accepts a sign, decimals, thousands separators in groups of three, a leading `=`, a trailing
    period, `$…$` and `\\boxed{…}` wrappers and a typographic minus sign.
    """
    value = parse_decimal(text)
    return None if value is None else float(value)


def parse_decimal(text: str) -> Decimal | None:
    """Like `parse_number`, but exact: use it to compare numbers too long for a float."""
    text = unwrap_math(text)
    if text.startswith("="):
        text = unwrap_math(text[1:])
    text = text.rstrip(".").strip()
    for minus in _MINUS_SIGNS:
        text = text.replace(minus, "-")
    if not _NUMBER.match(text):
        return None
    return Decimal(text.replace(",", ""))


def is_canonical_number(text: str) -> bool:
    """True for a plain decimal such as `-42` or `3.5` (no plus sign, commas or leading zeros)."""
    return bool(_CANONICAL.match(text.strip()))
