"""parse_number reads the ways models write numbers, and nothing else."""

from __future__ import annotations

from decimal import Decimal

import pytest

from smarttuner.tasks.numbers import is_canonical_number, parse_decimal, parse_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("14", 14.0),
        (" 14 ", 14.0),
        ("14.0", 14.0),
        ("-3", -3.0),
        ("+7", 7.0),
        ("\u22123", -3.0),  # typographic minus
        ("1,000", 1000.0),
        ("-12,345.5", -12345.5),
        ("= 14", 14.0),
        ("14.", 14.0),
        ("0.5", 0.5),
        (".5", 0.5),
        ("$14$", 14.0),
        ("\\boxed{14}", 14.0),
        ("$\\boxed{-2}$", -2.0),
    ],
)
def test_parse_number_accepts_natural_spellings(text: str, expected: float) -> None:
    assert parse_number(text) == expected


@pytest.mark.parametrize(
    "text", ["", "abc", "14 apples", "7 * 2", "1,00", "1,0000", "nan", "inf", "1e5", "--3", "1.2.3"]
)
def test_parse_number_rejects_non_numbers(text: str) -> None:
    assert parse_number(text) is None


def test_parse_decimal_is_exact_for_long_integers() -> None:
    # Both round to the same float; Decimal keeps them apart.
    assert float("12345678901234567891") == float("12345678901234567890")
    assert parse_decimal("12345678901234567891") == Decimal("12345678901234567891")
    assert parse_decimal("12345678901234567891") != parse_decimal("12345678901234567890")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-42", True),
        ("3.5", True),
        ("0", True),
        ("007", False),
        ("+3", False),
        ("1,000", False),
        ("Yes", False),
    ],
)
def test_is_canonical_number(text: str, expected: bool) -> None:
    assert is_canonical_number(text) is expected
