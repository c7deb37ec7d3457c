"""A curriculum for GRPO's training prompts: easier prompts walked first.

A stage is a number of prompts made with other task parameters than the run's: either a
reasoning-gym curriculum level (the dataset's own difficulty ladder, e.g. syllogism level 0
uses only "All" statements, propositional logic level 0 has 2 variables and 2 statements) or
explicit `params`, or both (params on top of the level). The training pool is the stages'
prompts in order, then the task's own pool; GRPO walks the pool in order, so with
`exploration_batchsize` B a stage of N prompts lasts N / B iterations.

Pure apart from building the examples; `stage_params` and `stage_seed` are what the tests pin.
"""

from __future__ import annotations

from typing import Any

from smarttuner.tasks.base import Example

STAGE_SEED_STRIDE = 1000  # stage k draws from dataset_seed + (k + 1) * STAGE_SEED_STRIDE


def _curriculum(name: str) -> Any:
    from reasoning_gym.factory import create_curriculum, has_curriculum

    if not has_curriculum(name):
        raise ValueError(
            f"curriculum level: reasoning-gym has no curriculum for task {name!r} "
            "(give the stage explicit params instead)"
        )
    return create_curriculum(name)


def _top(curriculum: Any) -> int:
    return max(len(attr.levels) - 1 for attr in curriculum.attributes.values())


def top_level(name: str) -> int:
    """The highest level of reasoning-gym's curriculum for `name` (every attribute at its top)."""
    return _top(_curriculum(name))


def level_params(name: str, level: int, params: dict[str, Any]) -> dict[str, Any]:
    """`params` with the fields reasoning-gym's curriculum for `name` sets at `level`."""
    curriculum = _curriculum(name)
    top = _top(curriculum)
    if not 0 <= level <= top:
        raise ValueError(f"curriculum level {level} for {name!r}: levels run from 0 to {top}")
    curriculum.set_global_level(level)
    config = curriculum.generate_configuration(defaults=dict(params))
    controlled = set()
    for attr in curriculum.attributes.values():
        controlled |= {
            getattr(attr, f, None) for f in ("field_name", "lower_field_name", "upper_field_name")
        }
    return {**params, **{k: getattr(config, k) for k in controlled if k}}


def stage_params(name: str, params: dict[str, Any], stage: Any) -> dict[str, Any]:
    """The task parameters of one stage: the run's, then the level's, then the stage's own."""
    merged = dict(params)
    if stage.level is not None:
        merged = level_params(name, stage.level, merged)
    return {**merged, **stage.params}


def stage_seed(dataset_seed: int, index: int) -> int:
    """Stage `index`'s seed: apart from the run's pool and from the other stages."""
    return dataset_seed + (index + 1) * STAGE_SEED_STRIDE


def curriculum_pools(
    name: str, params: dict[str, Any], stages: list[Any], dataset_seed: int
) -> list[list[Example]]:
    """Each stage's prompts, in stage order."""
    from smarttuner.tasks import get_task

    return [
        get_task(name, **stage_params(name, params, stage)).examples(
            stage_seed(dataset_seed, k), stage.num_examples
        )
        for k, stage in enumerate(stages)
    ]
