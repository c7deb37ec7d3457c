"""A GRPO curriculum: stages of easier prompts (a reasoning-gym level, explicit params, or both)
walked before the task's own pool, eval questions kept out, answer balance kept per stage."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from smarttuner.config import CurriculumStage, GRPOConfig, build_config
from smarttuner.tasks.curriculum import level_params, stage_params, stage_seed


def test_level_sets_only_the_fields_the_curriculum_controls() -> None:
    level0 = level_params("syllogism", 0, {"invalid_ratio": 0.5})
    assert level0 == {
        "invalid_ratio": 0.5,  # the run's own parameter survives
        "allow_all": True,
        "allow_no": False,
        "allow_some": False,
        "allow_some_not": False,
    }
    top = level_params("syllogism", 3, {})
    assert all(top[k] for k in ("allow_all", "allow_no", "allow_some", "allow_some_not"))
    ranges = level_params("propositional_logic", 0, {})
    assert ranges["max_vars"] == 2 and ranges["max_statements"] == 2


def test_bad_levels_name_the_problem() -> None:
    with pytest.raises(ValueError, match="levels run from 0 to 3"):
        level_params("syllogism", 4, {})
    with pytest.raises(ValueError, match="no curriculum for task 'gsm_symbolic'"):
        level_params("gsm_symbolic", 0, {})


def test_stage_params_stack_run_level_and_stage() -> None:
    stage = CurriculumStage(num_examples=4, level=0, params={"allow_no": True})
    merged = stage_params("syllogism", {"inversion_probability": 0.0}, stage)
    assert merged["inversion_probability"] == 0.0
    assert merged["allow_no"] is True and merged["allow_some"] is False
    assert stage_params("arithmetic", {"max_value": 20}, CurriculumStage(
        num_examples=4, params={"max_value": 5})) == {"max_value": 5}  # fmt: skip
    assert len({stage_seed(42, k) for k in range(3)} | {42, 123}) == 5


def test_a_stage_needs_some_difficulty() -> None:
    with pytest.raises(ValidationError, match="needs a level, params, or both"):
        CurriculumStage(num_examples=4)
    with pytest.raises(ValidationError):
        CurriculumStage(num_examples=0, level=1)


def _data(tmp_path, task: str, curriculum: list[dict], **extra):
    from smarttuner.grpo.trainer import prepare_data

    overrides = {
        "task.name": task,
        "task.num_train_examples": 30,
        "eval.num_examples": 20,
        "grpo.curriculum": curriculum,
        "output_dir": str(tmp_path / "x"),
        **extra,
    }
    return prepare_data(build_config(GRPOConfig, None, overrides))


def test_stages_come_first_in_the_training_pool(tmp_path) -> None:
    data = _data(tmp_path, "arithmetic", [{"num_examples": 8, "params": {"max_value": 3}}])
    assert len(data.train) == 38

    def largest(e):
        return max(e.metadata[k] for k in "abc")

    assert all(largest(e) <= 3 for e in data.train[:8])
    assert max(largest(e) for e in data.train[8:]) > 3
    without = _data(tmp_path, "arithmetic", [])
    assert data.train[8:] == without.train  # the task's own pool is unchanged


def _premises(example) -> list[str]:
    return [line.split()[1] for line in example.question.splitlines() if line[:2] in ("1.", "2.")]


def test_reasoning_gym_levels_with_balanced_answers(tmp_path) -> None:
    data = _data(
        tmp_path,
        "syllogism",
        [{"num_examples": 120, "level": 0}, {"num_examples": 40, "level": 1}],
        **{"task.balance_answers": True},
    )
    # level 0 is 9 in 10 "Yes": balancing keeps as many Yes as there are No, stage by stage
    first = data.train[: next(i for i, e in enumerate(data.train) if _premises(e) != ["All"] * 2)]
    assert len(first) >= 4
    assert [e.answer for e in first].count("Yes") == [e.answer for e in first].count("No")
    assert any("No" in _premises(e) for e in data.train[len(first) :])
    assert not {e.question for e in data.train} & {e.question for e in data.eval}


def test_a_bad_stage_fails_before_training(tmp_path) -> None:
    with pytest.raises(ValueError, match="no curriculum for task 'gsm_symbolic'"):
        _data(tmp_path, "gsm_symbolic", [{"num_examples": 4, "level": 0}])
