"""Kill a run, resume it, get the same run: on the tiny model, the metrics a resumed run logs
(every GRPO and eval line, timings aside) and its final weights equal those of a run that was
never interrupted — bit for bit, on the CPU.

The recipe is chosen to exercise every piece of carried state: a buffer that replays the
previous iteration (buffer_size 16 = two iterations), μ = 2 passes, accumulation windows of 3
minibatches that straddle iterations (4 per iteration, so partial gradients are open at most
checkpoints), dapo's window token count, a KL reference, shuffling RNG, the data cursor and a
mid-run evaluation.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from smarttuner.checkpoint import CheckpointError, RunInterrupted
from smarttuner.config import ConfigError, GRPOConfig, build_config
from smarttuner.grpo.trainer import train_grpo
from smarttuner.tracking import run_fields

REWARDS = """
import os, pathlib, time

def spread(prompts, completions, **kwargs):
    gate = os.environ.get("RESUME_TEST_BLOCK_AFTER")
    if gate and pathlib.Path(gate).exists():  # the killed run: hang in the next iteration
        time.sleep(600)
    return [len(c) / 50.0 for c in completions]
"""


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resume-rewards")
    (path / "resume_rewards.py").write_text(textwrap.dedent(REWARDS))
    sys.path.insert(0, str(path))
    yield path
    sys.path.remove(str(path))


def recipe(model_dir: str, out: Path, **overrides: Any) -> dict[str, Any]:
    values = {
        "model": {"name": model_dir},
        "task": {"name": "arithmetic"},
        "num_iterations": 5,
        "grpo": {
            "exploration_batchsize": 2,
            "num_generations": 4,
            "buffer_size": 16,
            "mu": 2,
            "loss_type": "dapo",
            "beta": 0.04,
        },
        "optim": {"batch_size": 4, "gradient_accumulation_steps": 3, "learning_rate": 0.01},
        "generation": {"max_new_tokens": 12},
        "eval": {"num_examples": 4, "every": 2},
        "checkpoint_every": 1,
        "output_dir": str(out),
        "rewards": [
            {"name": "correctness", "weight": 0.85},
            {"name": "format", "weight": 0.15},
            {"name": "resume_rewards:spread", "weight": 1.0},
        ],
    }
    for key, value in overrides.items():
        node = values
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return values


def config(values: dict[str, Any]) -> GRPOConfig:
    return build_config(GRPOConfig, None, values)


def logged(out: Path) -> list[dict[str, Any]]:
    """metrics.jsonl without the wall-clock fields."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [run_fields(r) for r in rows]


def adapter(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "model" / "adapter_model.safetensors")


def assert_same_run(resumed: Path, reference: Path) -> None:
    a, b = logged(resumed), logged(reference)
    assert [(r["phase"], r["step"]) for r in a] == [(r["phase"], r["step"]) for r in b]
    for x, y in zip(a, b, strict=True):
        assert x == y, (x["phase"], x["step"])  # exactly: losses, rewards, advantages, evals
    wa, wb = adapter(resumed), adapter(reference)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def reference(tiny_model_dir: str, reward_dir: Path, tmp_path_factory) -> Path:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    train_grpo(config(recipe(tiny_model_dir, out)))
    return out


def test_a_killed_cli_run_resumes_to_the_same_metrics(
    tiny_model_dir: str, reward_dir: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    values = recipe(tiny_model_dir, out)
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump({k: v for k, v in values.items() if k != "output_dir"}))
    gate = out / "checkpoints" / "checkpoint-000002"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",  # the same arithmetic as this (single-threaded) process
        "PYTHONPATH": os.pathsep.join([str(reward_dir), os.environ.get("PYTHONPATH", "")]),
        "RESUME_TEST_BLOCK_AFTER": str(gate),
    }
    command = [sys.executable, "-c", "from smarttuner.cli import main; main()", "grpo"]
    proc = subprocess.Popen(
        [*command, "-c", str(recipe_file), "-o", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not gate.exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before its checkpoint: {proc.stderr.read().decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no checkpoint-000002 within 120 s")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # mid-way through iteration 3: no goodbye, no last save
    proc.wait(timeout=30)
    proc.stderr.close()
    assert not (out / "model").exists() and not (out / "results.json").exists()
    (out / "checkpoints" / ".tmp-checkpoint-000003-x").mkdir()  # as if killed mid-write

    results = train_grpo(config(recipe(tiny_model_dir, out, resume=True)))

    assert_same_run(out, reference)
    assert (
        results["optimizer_steps"]
        == json.loads((reference / "results.json").read_text())["optimizer_steps"]
    )
    assert "baseline" in results  # carried over from before the kill
    # and so are the step-0 eval's per-prompt results: the final eval is paired with them
    assert results["paired"] == json.loads((reference / "results.json").read_text())["paired"]
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["checkpoint-000004", "checkpoint-000005"]  # newest 2 kept, no leftovers


def test_sigterm_saves_stops_and_resumes_to_the_same_metrics(
    tiny_model_dir: str, reward_dir: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "stopped"
    values = recipe(tiny_model_dir, out, checkpoint_every=0)  # only the signal saves
    before = signal.getsignal(signal.SIGTERM)

    def terminate(step: int, record: dict[str, Any]) -> None:
        if step == 4 and record["phase"] == "grpo":
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(RunInterrupted, match=r"interrupted at iteration 4; resume with --resume"):
        train_grpo(config(values), on_step=terminate)
    assert signal.getsignal(signal.SIGTERM) == before  # the previous handler is back
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["checkpoint-000004"]

    train_grpo(config({**values, "resume": True}))
    assert_same_run(out, reference)


def test_full_finetuning_resumes_exactly(
    tiny_model_dir: str, reward_dir: Path, tmp_path: Path
) -> None:
    # full fine-tuning: every weight (the tiny model ties its embeddings) and a separate frozen
    # reference copy that must stay the *starting* model after a resume
    values = recipe(tiny_model_dir, tmp_path / "ref", num_iterations=3, **{"lora.enabled": False})
    values["optim"]["learning_rate"] = 1e-3
    train_grpo(config(values))
    out = tmp_path / "full"

    def terminate(step: int, record: dict[str, Any]) -> None:
        if step == 1 and record["phase"] == "grpo":
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(RunInterrupted):
        train_grpo(config({**values, "output_dir": str(out)}), on_step=terminate)
    train_grpo(config({**values, "output_dir": str(out), "resume": True}))
    assert logged(out) == logged(tmp_path / "ref")
    wa = load_file(out / "model" / "model.safetensors")
    wb = load_file(tmp_path / "ref" / "model" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wb)


def test_resume_refuses_what_would_not_continue_the_same_run(
    tiny_model_dir: str, reward_dir: Path, reference: Path, tmp_path: Path
) -> None:
    values = recipe(tiny_model_dir, reference, resume=True)
    with pytest.raises(ConfigError, match=r"grpo\.beta was 0\.04 there and is 0\.0 now"):
        train_grpo(config({**values, "grpo": {**values["grpo"], "beta": 0.0}}))
    empty = recipe(tiny_model_dir, tmp_path / "nothing", resume=True)
    with pytest.raises(CheckpointError, match="no complete checkpoint under"):
        train_grpo(config(empty))
