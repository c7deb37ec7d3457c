"""The command line: bad input is one red line and a non-zero exit, before any damage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smarttuner.cli import app

pytestmark = pytest.mark.usefixtures("single_thread")


TINY_RUN = [
    "--task", "arithmetic",
    "--set", "grpo.exploration_batchsize=2",
    "--set", "grpo.num_generations=2",
    "--set", "optim.batch_size=4",
    "--set", "optim.gradient_accumulation_steps=1",
    "--set", "generation.max_new_tokens=4",
    "--set", "eval.num_examples=2",
]  # fmt: skip


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def assert_one_line_error(result, *needles: str) -> str:
    assert result.exit_code != 0, result.output
    lines = error_lines(result.output)
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:")
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def test_unknown_task(runner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["grpo", "--task", "no_such_task", "-o", str(tmp_path / "o")])
    assert_one_line_error(result, "'no_such_task'", "arithmetic")


def test_malformed_yaml_config(runner, tmp_path: Path) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("grpo:\n  beta: [0.1\n")
    result = runner.invoke(app, ["grpo", "--config", str(recipe), "-o", str(tmp_path / "o")])
    assert_one_line_error(result, "malformed YAML", str(recipe))
    assert not (tmp_path / "o").exists()  # nothing was started


def test_unknown_config_key(runner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["grpo", "--set", "grpo.betta=0.1", "-o", str(tmp_path / "o")])
    assert_one_line_error(result, "grpo.betta")


def test_batch_size_not_dividing_the_rollout_batch(runner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["grpo", "--set", "optim.batch_size=5", "-o", str(tmp_path / "o")])
    assert_one_line_error(result, "optim.batch_size=5", "48")
    assert not (tmp_path / "o").exists()


def test_existing_output_dir_is_not_clobbered(runner, tmp_path: Path, tiny_model_dir) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"precious": true}\n')
    result = runner.invoke(app, ["grpo", "--model", tiny_model_dir, "-o", str(out), *TINY_RUN])
    assert_one_line_error(result, str(out), "--overwrite")
    assert (out / "metrics.jsonl").read_text() == '{"precious": true}\n'
    assert [p.name for p in out.iterdir()] == ["metrics.jsonl"]


def test_prompt_longer_than_the_context(runner, tmp_path: Path, tiny_model_dir) -> None:
    # the tiny model has a 512-token context; 600 new tokens cannot fit with any prompt
    args = ["grpo", "--model", tiny_model_dir, "-o", str(tmp_path / "o"), *TINY_RUN]
    result = runner.invoke(app, [*args, "--set", "generation.max_new_tokens=600"])
    assert_one_line_error(result, "max_new_tokens 600", "context of 512 tokens")


def test_unknown_model_path_points_to_the_bundled_model(runner, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-model")
    result = runner.invoke(app, ["grpo", "--model", missing, "-o", str(tmp_path / "o"), *TINY_RUN])
    assert_one_line_error(result, "smollm2-135m-instruct", missing)


def test_tasks_lists_the_builtin_tasks(runner) -> None:
    result = runner.invoke(app, ["tasks"])
    assert result.exit_code == 0
    names = result.output.split()
    assert "arithmetic" in names and "syllogism" in names


def test_a_tiny_run_end_to_end(runner, tmp_path: Path, tiny_model_dir) -> None:
    out = tmp_path / "run"
    args = ["grpo", "--model", tiny_model_dir, "-o", str(out), "--num-iterations", "1"]
    result = runner.invoke(app, [*args, *TINY_RUN])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["eval", "grpo", "eval"]
    results = json.loads((out / "results.json").read_text())
    assert results["iterations"] == 1 and results["task"] == "arithmetic"
    greedy = results["paired"]["greedy"]  # the final eval paired with the one at step 0
    assert f"paired greedy: {greedy['gained']} prompts gained, {greedy['lost']} lost" in (
        result.output
    )
    assert (out / "model" / "adapter_config.json").is_file()
    assert (out / "config.yaml").is_file()
    # the same directory again needs --overwrite, and with it the run succeeds
    assert runner.invoke(app, [*args, *TINY_RUN]).exit_code != 0
    again = runner.invoke(app, [*args, *TINY_RUN, "--overwrite"])
    assert again.exit_code == 0, again.output
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3  # the old run's log was replaced, not appended to
