"""`smarttuner eval`: one model, its base, two models side by side; results JSON; the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from smarttuner.cli import app
from smarttuner.config import GRPOConfig, build_config
from smarttuner.evaluate import harness
from smarttuner.evaluate.harness import EvalOptions, base_model_spec, run_evaluation
from smarttuner.grpo import trainer

SMALL = EvalOptions(num_examples=2, max_new_tokens=6, batch_size=4, keep_samples=1)


def test_one_model_greedy_and_pass_at_k(tiny_model_dir: str, tmp_path: Path) -> None:
    options = EvalOptions(
        num_examples=2, max_new_tokens=6, batch_size=4, num_samples=3, pass_k=(1, 3)
    )
    out = tmp_path / "eval.json"
    results = run_evaluation(tiny_model_dir, "arithmetic", options, output=out)
    final = results["final"]
    assert final["n"] == 2 and 0 <= final["accuracy"] <= 1 and final["mean_length"] > 0
    assert {"pass@1", "pass@3", "sample_accuracy", "num_samples"} <= set(final)
    assert final["num_samples"] == 3 and "baseline" not in results
    saved = json.loads(out.read_text())
    assert saved["final"] == final and saved["task"] == "arithmetic"
    assert len(saved["samples"]["final"]) == 2  # keep_samples default 10, only 2 prompts


def test_base_model_of_an_adapter(tiny_adapter_dir: str, tiny_model_dir: str) -> None:
    assert base_model_spec(tiny_adapter_dir) == tiny_model_dir
    with pytest.raises(ValueError, match="needs a PEFT adapter directory"):
        base_model_spec(tiny_model_dir)
    compared = run_evaluation(tiny_adapter_dir, "arithmetic", SMALL, compare_base=True)
    base_only = run_evaluation(tiny_adapter_dir, "arithmetic", SMALL, use_base_model=True)
    plain = run_evaluation(tiny_model_dir, "arithmetic", SMALL)
    # the base under the adapter is the tiny model itself: same greedy completions
    assert base_only["samples"]["final"] == plain["samples"]["final"]
    assert compared["samples"]["baseline"] == plain["samples"]["final"]
    assert compared["labels"] == {"baseline": tiny_model_dir, "final": tiny_adapter_dir}
    assert compared["samples"]["final"] != compared["samples"]["baseline"]  # adapter acts
    with pytest.raises(ValueError, match="not both"):
        run_evaluation(tiny_adapter_dir, "arithmetic", SMALL, compare_to="x", compare_base=True)


def test_options_are_checked_before_any_work() -> None:
    with pytest.raises(ValueError, match="between 1 and the number of samples 2"):
        EvalOptions(num_samples=2, pass_k=(1, 4))
    with pytest.raises(ValueError, match="num_examples must be >= 1"):
        EvalOptions(num_examples=0)
    with pytest.raises(ValueError, match="keep_samples must be >= 0"):
        EvalOptions(keep_samples=-2)
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        run_evaluation("does-not-matter", "nope", SMALL)


def test_eval_command_writes_a_before_after_table(
    tiny_adapter_dir: str, tiny_model_dir: str, tmp_path: Path
) -> None:
    out = tmp_path / "cmp.json"
    args = [
        "eval", "--model", tiny_adapter_dir, "--compare-to", tiny_model_dir, "--task", "arithmetic",
        "--num-examples", "3", "--max-new-tokens", "6", "--num-samples", "2", "--pass-k", "1,2",
        "--device", "cpu", "-o", str(out), "--keep-samples", "-1", "--autocast", "bfloat16",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "pass@2" in result.output and "change" in result.output
    saved = json.loads(out.read_text())
    assert set(saved) >= {"baseline", "final", "labels", "samples", "task", "model"}
    assert saved["autocast"] == "bfloat16"
    assert [len(saved["samples"][k]) for k in ("baseline", "final")] == [3, 3]  # -1: all kept
    paired = saved["paired"]  # prompt by prompt, from the same greedy and sampled results
    greedy = paired["greedy"]["correct"]
    assert [sum(greedy[k]) / 3 for k in ("baseline", "final")] == [
        saved[k]["accuracy"] for k in ("baseline", "final")
    ]
    counts = paired["sampled"]["correct_counts"]
    assert [sum(counts[k]) / 6 for k in ("baseline", "final")] == [
        saved[k]["sample_accuracy"] for k in ("baseline", "final")
    ]
    assert paired["sampled"]["mean_change"] == pytest.approx(
        saved["final"]["sample_accuracy"] - saved["baseline"]["sample_accuracy"]
    )
    assert "paired greedy:" in result.output and "paired sampled:" in result.output
    bad = CliRunner().invoke(app, ["eval", "--model", tiny_model_dir, "--pass-k", "one"])
    assert bad.exit_code == 2 and bad.output.startswith("error:")
    base = CliRunner().invoke(app, ["eval", "--model", tiny_model_dir, "--use-base-model"])
    assert base.exit_code == 2 and "adapter" in base.output
    fp8 = CliRunner().invoke(app, ["eval", "--model", tiny_model_dir, "--autocast", "fp8"])
    assert fp8.exit_code == 2 and "eval autocast must be one of" in fp8.output


def test_autocast_eval_is_the_pipeline_eval(tiny_adapter_dir: str, logit_spy) -> None:
    """`--autocast bfloat16` decodes as a pipeline's evals do with model.autocast bfloat16 (the
    merged bf16 copy under autocast): the same logits as `evaluate_model`, other than float32's."""
    seen, install = logit_spy
    install(harness, "evaluate_task")
    install(trainer, "evaluate_task")
    options = EvalOptions(num_examples=2, max_new_tokens=4, batch_size=2)
    bf16 = run_evaluation(tiny_adapter_dir, "arithmetic", replace(options, autocast="bfloat16"))
    values = {
        "model.name": tiny_adapter_dir,
        "model.autocast": "bfloat16",
        "task.name": "arithmetic",
        "eval.num_examples": 2,
        "eval.batch_size": 2,
        "eval.max_new_tokens": 4,
    }
    cfg = build_config(GRPOConfig, None, values)
    assert bf16["final"] == trainer.evaluate_model(cfg, trainer.prepare_data(cfg)).metrics()
    float32 = run_evaluation(tiny_adapter_dir, "arithmetic", options)
    assert bf16["autocast"] == "bfloat16" and float32["autocast"] == "none"
    assert torch.equal(seen[0], seen[1]) and not torch.equal(seen[0], seen[2])


def test_unknown_autocast_is_refused() -> None:
    choices = "auto, none, bfloat16, float16"
    with pytest.raises(ValueError, match=f"eval autocast must be one of {choices}"):
        EvalOptions(autocast="fp8")
