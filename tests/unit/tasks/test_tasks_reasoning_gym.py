"""reasoning-gym datasets as tasks: generation, scoring with normalised answers, lookup."""

from __future__ import annotations

import json

import pytest

from smarttuner.tasks import (
    Example,
    ReasoningGymTask,
    Task,
    get_task,
    list_tasks,
    registered_tasks,
)
from smarttuner.tasks.reasoning_gym import normalise_answer

NAMED = ["syllogism", "propositional_logic", "basic_arithmetic", "chain_sum", "gsm_symbolic"]


def tagged(answer: str) -> str:
    return f"<think>x</think><answer>{answer}</answer>"


def test_the_five_named_datasets_are_registered() -> None:
    assert set(NAMED) <= set(registered_tasks())
    assert set(NAMED) | {"arithmetic", "leg_counting"} <= set(list_tasks())


@pytest.mark.parametrize("name", NAMED)
def test_examples_are_deterministic_and_serialisable(name: str) -> None:
    task = get_task(name)
    assert isinstance(task, Task)
    first = task.examples(seed=1, n=4)
    assert first == task.examples(seed=1, n=4)
    assert first != task.examples(seed=2, n=4)
    for example in first:
        assert isinstance(example.answer, str) and example.answer
        json.dumps(example.metadata)


@pytest.mark.parametrize("name", NAMED)
def test_the_gold_answer_scores_full_marks(name: str) -> None:
    task = get_task(name)
    for example in task.examples(seed=0, n=4):
        assert task.score(tagged(example.answer), example) == pytest.approx(1.0)
        assert task.is_correct(tagged(example.answer), example)


def syllogism_example(gold: str) -> Example:
    task = get_task("syllogism")
    return next(e for seed in range(50) for e in task.examples(seed, 4) if e.answer == gold)


@pytest.mark.parametrize("answer", ["yes", "YES", "Yes.", " yes ", "**Yes**", "$Yes$"])
def test_syllogism_accepts_any_casing_of_the_gold(answer: str) -> None:
    task = get_task("syllogism")
    assert task.score(tagged(answer), syllogism_example("Yes")) == 1.0


def test_syllogism_wrong_answer_and_missing_tags_score_zero() -> None:
    task = get_task("syllogism")
    example = syllogism_example("No")
    assert task.score(tagged("yes"), example) == 0.0
    assert task.score("no", example) == 0.0  # no answer tag
    assert not task.is_correct("no", example)
    assert task.is_correct(tagged("no"), example)


@pytest.mark.parametrize("name", ["basic_arithmetic", "chain_sum", "gsm_symbolic"])
def test_numeric_answers_in_natural_forms_score_full_marks(name: str) -> None:
    task = get_task(name)
    example = task.examples(seed=0, n=1)[0]
    gold = example.answer
    for answer in [f"{gold}.0", f"= {gold}", f"\\boxed{{{gold}}}", f"{gold}."]:
        assert task.score(tagged(answer), example) == 1.0, answer


def test_thousands_separators_and_negative_numbers() -> None:
    task = get_task("gsm_symbolic")
    assert task.score(tagged("12,000"), Example("q", "12000")) == 1.0
    # gsm_symbolic's own scorer drops the sign of "-1"; the gold itself must still score 1.
    assert task.score(tagged("-1"), Example("q", "-1")) == 1.0
    assert task.score(tagged("1"), Example("q", "-1")) < 1.0
    chain = get_task("chain_sum")
    assert chain.score(tagged("-1,234"), Example("q", "-1234")) == 1.0


LOGIC = Example(
    question="Given: 1. (P → Q) 2. P. What can we conclude?",
    answer="(P ∧ Q)",
    metadata={"premises": ["(P → Q)", "P"], "variables": ["P", "Q"]},
)


@pytest.mark.parametrize(
    "answer",
    [
        "(P ∧ Q)",
        "P & Q",
        "P && Q",
        "P and Q",
        "P /\\ Q",
        "P \\land Q",
        "P -> Q",
        "P => Q",
        "~P | Q",
        "not P or Q",
        "!P || Q",
        "P <-> Q",
        "P iff Q",
        "¬¬Q ∧ P",
    ],
)
def test_propositional_logic_accepts_ascii_and_word_connectives(answer: str) -> None:
    assert get_task("propositional_logic").score(tagged(answer), LOGIC) == 1.0


def test_propositional_logic_invalid_and_trivial_conclusions() -> None:
    task = get_task("propositional_logic")
    assert task.score(tagged("~Q"), LOGIC) == pytest.approx(0.05)  # parses, does not follow
    assert task.score(tagged("Q"), LOGIC) == pytest.approx(0.25)  # a bare variable is "trivial"
    assert task.score(tagged("R"), LOGIC) == 0.0  # not one of the question's variables


def test_garbage_never_raises() -> None:
    for name in NAMED:
        task = get_task(name)
        example = task.examples(seed=0, n=1)[0]
        for junk in ["", "((((", "\\boxed{", "None", "∧∧∧", "Z → → Y"]:
            assert 0.0 <= task.score(tagged(junk), example) < 1.0


def test_normalise_answer_leaves_periods_the_gold_needs() -> None:
    assert normalise_answer("The end.", "The end.") == "The end."
    assert normalise_answer("Yes.", "Yes") == "Yes"
    assert normalise_answer("true", "True") == "True"
    assert normalise_answer("0.50", "0.5") == "0.5"
    assert normalise_answer("007", "7") == "7"
    assert normalise_answer("007", "007") == "007"  # codes keep their spelling


def test_get_task_resolves_an_unregistered_dataset() -> None:
    assert "leg_counting" not in registered_tasks()
    task = get_task("leg_counting", min_animals=2, max_animals=3)
    assert isinstance(task, ReasoningGymTask) and task.name == "leg_counting"
    example = task.examples(seed=0, n=1)[0]
    assert task.score(tagged(example.answer), example) == 1.0


def test_registered_factories_pass_params_through() -> None:
    task = get_task("chain_sum", min_terms=2, max_terms=2, min_digits=1, max_digits=1)
    for example in task.examples(seed=0, n=5):
        assert example.metadata["num_terms"] == 2


def test_unknown_task_message_names_it_and_the_options() -> None:
    with pytest.raises(ValueError, match="unknown task 'no_such_task'") as info:
        get_task("no_such_task")
    message = str(info.value)
    assert "arithmetic" in message and "syllogism" in message and "reasoning-gym" in message


def test_bad_dataset_params_are_rejected_early() -> None:
    with pytest.raises(ValueError, match="no_such_param"):
        get_task("syllogism", no_such_param=1)
    with pytest.raises(ValueError, match="seed"):
        get_task("chain_sum", seed=3)
