"""scripts/grpo_ablation.py: the recipe's GRPO part, each variant's overrides, and the table
built from finished runs (read back, not rerun); bad variant names stop before anything runs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SCRIPT = Path(__file__).parents[2] / "scripts" / "grpo_ablation.py"
spec = importlib.util.spec_from_file_location("grpo_ablation", SCRIPT)
grpo_ablation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(grpo_ablation)

RECIPE = {
    "model": {"name": "smollm2-135m-instruct"},
    "run_sft": "auto",
    "probe": {"num_prompts": 8},
    "sft": {"num_datapoints": 10},
    "grpo": {"beta": 0.04, "loss_type": "dr_grpo"},
    "optim": {"learning_rate": 4e-5},
}


def test_recipe_drops_the_pipeline_sections(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    recipe = grpo_ablation.grpo_recipe(path)
    assert set(recipe) == {"model", "grpo", "optim"}
    assert recipe["grpo"] == RECIPE["grpo"]


def test_each_variant_changes_one_choice() -> None:
    assert grpo_ablation.overrides("reference", RECIPE) == []
    assert grpo_ablation.overrides("beta0", RECIPE) == ["grpo.beta=0"]
    assert grpo_ablation.overrides("half_lr", RECIPE) == ["optim.learning_rate=2e-05"]
    assert grpo_ablation.overrides("double_lr", RECIPE) == ["optim.learning_rate=8e-05"]
    with pytest.raises(SystemExit, match="unknown variant 'nope'"):
        grpo_ablation.overrides("nope", RECIPE)


def fake_run(out: Path, accuracy: float, baseline: dict | None = None) -> None:
    out.mkdir(parents=True)
    results = {"final": {"accuracy": accuracy, "balanced_accuracy": accuracy - 0.1}}
    if baseline:
        results["baseline"] = baseline
    (out / "results.json").write_text(json.dumps(results))
    steps = [
        {
            "phase": "grpo",
            "step": i,
            "reward_mean": i / 10,
            "zero_std_fraction": 0.5,
            "clip_fraction": 0.0,
            "kl": 0.001,
        }
        for i in range(1, 11)
    ]
    steps.append({"phase": "eval", "step": 10, "accuracy": accuracy})
    (out / "metrics.jsonl").write_text("\n".join(json.dumps(s) for s in steps) + "\n")
    (out / "cpu_minutes.json").write_text(json.dumps({"cpu_minutes": 12.5}))


def test_summary_and_table_of_finished_runs(tmp_path: Path) -> None:
    fake_run(tmp_path / "reference", 0.8, baseline={"accuracy": 0.7, "balanced_accuracy": 0.6})
    fake_run(tmp_path / "beta0", 0.75)
    rows = [grpo_ablation.summarise(n, tmp_path / n) for n in ("reference", "beta0")]
    assert rows[0]["reward_first5"] == pytest.approx(0.3)  # mean of 0.1 … 0.5
    assert rows[0]["reward_last5"] == pytest.approx(0.8)  # mean of 0.6 … 1.0
    assert rows[1]["cpu_minutes"] == 12.5
    text = grpo_ablation.table(rows)
    assert "| start (reference's eval at step 0) | — | 0.700 | 0.600 |" in text
    assert "| beta0 | no KL term to the start model (beta 0) | 0.750 | 0.650 | 0.300 → 0.800 |" in (
        text
    )


def test_finished_variants_are_read_back_not_rerun(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    fake_run(tmp_path / "out" / "reference", 0.8, baseline={"accuracy": 0.7})
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "-c", str(recipe), "--start", "missing-model",
         "--output", str(tmp_path / "out"), "--variants", "reference"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "| reference | the recipe as configured | 0.800 |" in done.stdout
    assert (tmp_path / "out" / "ablation.md").read_text().startswith("| variant |")


def test_unknown_variant_fails_before_writing(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "-c", str(recipe), "--start", "x",
         "--output", str(tmp_path / "out"), "--variants", "reference", "nope"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0
    assert "unknown variant 'nope'" in done.stderr
    assert not (tmp_path / "out").exists()


def test_curriculum_variant_is_a_stage_per_level_below_the_top() -> None:
    from smarttuner.config import GRPOConfig, build_config, parse_override

    (item,) = grpo_ablation.overrides("curriculum", {"task": {"name": "syllogism"}}, 30)
    key, value = parse_override(item)
    assert key == "grpo.curriculum"
    assert value == [{"level": k, "num_examples": 30} for k in range(3)]  # syllogism: 0 … 3
    cfg = build_config(GRPOConfig, None, {key: value})
    assert [s.level for s in cfg.grpo.curriculum] == [0, 1, 2]
    with pytest.raises(SystemExit, match="no curriculum for task 'gsm_symbolic'"):
        grpo_ablation.overrides("curriculum", {"task": {"name": "gsm_symbolic"}})
