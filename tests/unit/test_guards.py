"""The guards that keep a run from being lost, on the tiny model: a non-finite streak stops
with the last good checkpoint named and kept; a reward or a task that raises is named with its
sample, after the state is saved; a full disk leaves the previous checkpoint valid and is one
line; an output directory is never reused without --overwrite or --resume; an interrupted CLI
run says how to resume."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import smarttuner.checkpoint as ckpt
import smarttuner.grpo.optimize as optimize
from smarttuner.cli import app
from smarttuner.config import GRPOConfig, build_config
from smarttuner.grpo.checkpoint import TaskError
from smarttuner.grpo.trainer import train_grpo
from smarttuner.outputs import OutputDirError
from smarttuner.rewards import RewardError
from smarttuner.tasks import get_task

REWARDS = """
import os, signal

CALLS = {"n": 0, "fail_at": None, "term_at": None}

def spread(prompts, completions, **kwargs):
    CALLS["n"] += 1
    if CALLS["n"] == CALLS["fail_at"]:
        raise ZeroDivisionError("the user's bug")
    if CALLS["n"] == CALLS["term_at"]:
        os.kill(os.getpid(), signal.SIGTERM)
    return [len(c) / 50.0 for c in completions]
"""


@pytest.fixture()
def rewards(tmp_path: Path, monkeypatch):
    (tmp_path / "guard_rewards.py").write_text(textwrap.dedent(REWARDS))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    import guard_rewards

    module = importlib.reload(guard_rewards)
    module.CALLS.update(n=0, fail_at=None, term_at=None)
    return module


def values(model_dir: str, out: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "model.name": model_dir,
        "task.name": "arithmetic",
        "num_iterations": 3,
        "grpo.exploration_batchsize": 2,
        "grpo.num_generations": 4,
        "optim.batch_size": 4,
        "optim.gradient_accumulation_steps": 1,
        "optim.learning_rate": 1e-2,
        "generation.max_new_tokens": 8,
        "eval.num_examples": 2,
        "checkpoint_every": 1,
        "output_dir": str(out),
        "rewards": [{"name": "format", "weight": 0.5}, {"name": "guard_rewards:spread"}],
        **overrides,
    }


def run(model_dir: str, out: Path, **overrides: Any) -> dict[str, Any]:
    return train_grpo(build_config(GRPOConfig, None, values(model_dir, out, **overrides)))


def grpo_lines(out: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    keys = ("step", "loss", "rewards")
    return [{k: r[k] for k in keys} for r in rows if r["phase"] == "grpo"]


def test_a_nonfinite_streak_stops_and_keeps_the_last_good_checkpoint(
    tiny_model_dir: str, tmp_path: Path, rewards, monkeypatch
) -> None:
    real = optimize.grpo_loss
    calls = {"n": 0}

    def nan_from_iteration_2(*args, **kwargs):  # 2 minibatches per iteration
        calls["n"] += 1
        out = real(*args, **kwargs)
        return dataclasses.replace(out, loss=out.loss * float("nan")) if calls["n"] > 2 else out

    monkeypatch.setattr(optimize, "grpo_loss", nan_from_iteration_2)
    out = tmp_path / "nan"
    with pytest.raises(optimize.NonFiniteLossError) as info:
        run(tiny_model_dir, out, max_nonfinite_in_a_row=2)
    message = str(info.value)
    good = out / "checkpoints" / "checkpoint-000001"
    assert "2 non-finite loss values in a row" in message and "\n" not in message
    assert f"the last good checkpoint is {good}" in message
    assert ckpt.list_checkpoints(out / "checkpoints") == [good]  # nothing saved after it
    ckpt.verify_checkpoint(good)


def test_a_raising_reward_is_named_after_the_state_is_saved(
    tiny_model_dir: str, tmp_path: Path, rewards
) -> None:
    run(tiny_model_dir, tmp_path / "reference", checkpoint_every=0)
    rewards.CALLS.update(n=0, fail_at=3)  # the reward is called once per iteration
    out = tmp_path / "broken"
    with pytest.raises(RewardError) as info:
        run(tiny_model_dir, out, checkpoint_every=0)  # no periodic checkpoints at all
    message = str(info.value)
    saved = out / "checkpoints" / "checkpoint-000002"
    assert "reward 'guard_rewards:spread' raised ZeroDivisionError: the user's bug" in message
    assert f"state of iteration 2 is saved in {saved}" in message and "\n" not in message
    # the user fixes the reward and resumes: the same run as one that never failed
    rewards.CALLS.update(fail_at=None)
    run(tiny_model_dir, out, checkpoint_every=0, resume=True)
    assert grpo_lines(out) == grpo_lines(tmp_path / "reference")


def test_a_raising_task_names_the_task_and_the_sample(
    tiny_model_dir: str, tmp_path: Path, rewards, monkeypatch
) -> None:
    task_type = type(get_task("arithmetic"))
    real = task_type.is_correct
    calls = {"n": 0}

    def broken(self, completion, example):
        calls["n"] += 1
        if calls["n"] > 2 + 8:  # baseline eval (2 prompts), iteration 1 (8 samples), then fail
            raise KeyError("no_such_field")
        return real(self, completion, example)

    monkeypatch.setattr(task_type, "is_correct", broken)
    out = tmp_path / "task"
    with pytest.raises(TaskError) as info:
        run(tiny_model_dir, out, checkpoint_every=0)
    message = str(info.value)
    assert "task 'arithmetic' raised KeyError in is_correct: 'no_such_field'" in message
    assert "(question '" in message and "completion '" in message  # the sample
    assert "state of iteration 1 is saved in" in message
    assert ckpt.latest_checkpoint(out / "checkpoints").name == "checkpoint-000001"


def test_a_full_disk_keeps_the_previous_checkpoint_and_is_one_line(
    tiny_model_dir: str, tmp_path: Path, rewards, monkeypatch
) -> None:
    real = ckpt.save_tensors
    saves = {"n": 0}

    def disk_fills_up(path, tensors):
        saves["n"] += 1
        if saves["n"] == 2:  # the second checkpoint's optimizer file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, tensors)

    monkeypatch.setattr(ckpt, "save_tensors", disk_fills_up)
    out = tmp_path / "full"
    args = ["grpo", "-c", str(write_recipe(tmp_path, tiny_model_dir)), "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    error = error_line(result.output)  # progress lines come before it
    assert error.startswith("error: could not write checkpoint 2")
    assert "No space left on device" in error and "checkpoint-000001 is intact" in error
    first = out / "checkpoints" / "checkpoint-000001"
    assert ckpt.list_checkpoints(out / "checkpoints") == [first]
    ckpt.verify_checkpoint(first)
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]


def error_line(output: str) -> str:
    """The CLI's error: one line, the last, and no traceback."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], output
    assert "Traceback" not in output
    return lines[-1]


def write_recipe(tmp_path: Path, model_dir: str) -> Path:
    data: dict[str, Any] = {}
    for key, value in values(model_dir, tmp_path).items():
        if key == "output_dir":
            continue
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_an_output_dir_is_reused_only_with_overwrite_or_resume(
    tiny_model_dir: str, tmp_path: Path, rewards
) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for resume in (False, "auto"):  # auto without a checkpoint is a fresh start: refused too
        with pytest.raises(OutputDirError, match="--overwrite to start over, --resume"):
            run(tiny_model_dir, out, resume=resume)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    with pytest.raises(ckpt.CheckpointError, match="no complete checkpoint"):
        run(tiny_model_dir, out, resume=True)
    assert (out / "notes.txt").read_text() == "mine"

    run(tiny_model_dir, out, overwrite=True, num_iterations=2)
    assert ckpt.latest_checkpoint(out / "checkpoints").name == "checkpoint-000002"
    run(tiny_model_dir, out, resume="auto", num_iterations=3)  # continues the run
    assert [r["step"] for r in grpo_lines(out)] == [1, 2, 3]
    run(tiny_model_dir, out, overwrite=True, num_iterations=1, checkpoint_every=0)
    assert not (out / "checkpoints").exists()  # a fresh run drops the old run's checkpoints
    assert [r["step"] for r in grpo_lines(out)] == [1]


def test_an_interrupted_cli_run_says_how_to_resume(
    tiny_model_dir: str, tmp_path: Path, rewards
) -> None:
    rewards.CALLS.update(term_at=2)  # SIGTERM arrives during iteration 2
    out = tmp_path / "cli"
    args = ["grpo", "-c", str(write_recipe(tmp_path, tiny_model_dir)), "-o", str(out)]
    before = signal.getsignal(signal.SIGTERM)
    result = CliRunner().invoke(app, [*args, "--set", "checkpoint_every=0"])
    assert result.exit_code != 0
    error = error_line(result.output)
    assert error.startswith("error: interrupted at iteration 2; resume with --resume")
    assert signal.getsignal(signal.SIGTERM) == before
    resumed = CliRunner().invoke(app, [*args, "--set", "checkpoint_every=0", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert [r["step"] for r in grpo_lines(out)] == [1, 2, 3]
