"""The worked syllogism trace agrees with reasoning-gym's own labels and names the rule."""

from __future__ import annotations

import pytest

from smarttuner.sft.syllogism_trace import parse_statement, syllogism_reasoning
from smarttuner.tasks import get_task


def test_parse_statement_reads_all_four_forms() -> None:
    assert parse_statement("All cats are mammals") == ("all", "cats", "mammals")
    assert parse_statement("No fish are bees") == ("no", "fish", "bees")
    assert parse_statement("Some bees are tigers?") == ("some", "bees", "tigers")
    assert parse_statement("Some bees are not tigers") == ("some_not", "bees", "tigers")
    with pytest.raises(ValueError, match="not a categorical statement"):
        parse_statement("Most bees are tigers")


def test_verdict_matches_the_generator_on_every_example_of_two_seeds() -> None:
    task = get_task("syllogism")
    examples = task.examples(seed=5, n=400) + task.examples(seed=6, n=400)
    kinds = set()
    for e in examples:
        m = e.metadata
        _, follows = syllogism_reasoning(m["premise1"], m["premise2"], m["conclusion"])
        assert follows == m["is_valid"], m
        kinds.add((m["type"], follows))
    assert kinds == {
        ("syllogism", True),
        ("syllogism", False),
        ("inversion", True),
        ("inversion", False),
    }


def test_reasoning_names_the_broken_rule_and_the_inverted_statement() -> None:
    text, ok = syllogism_reasoning(
        "No fish are bees", "Some bees are not tigers", "All fish are tigers"
    )
    assert not ok and "both statements are negative" in text
    text, ok = syllogism_reasoning(
        "All lions are cats", "All cats are mammals", "All lions are mammals"
    )
    assert ok and "Every rule holds" in text and "through cats" in text
    text, ok = syllogism_reasoning(
        "Some dogs are chefs", "No chefs are bees", "Some chefs are dogs"
    )
    assert ok and "swaps the terms of statement 1" in text
    text, ok = syllogism_reasoning("All dogs are chefs", "No chefs are bees", "All chefs are dogs")
    assert not ok and "only into 'some'" in text
