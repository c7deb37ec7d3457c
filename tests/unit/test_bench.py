"""The benchmark: workers measure in their own processes, ratios come from the same run."""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest

from smarttuner.bench import BenchSettings, run_bench
from smarttuner.bench.report import bench_table
from smarttuner.bench.run import summarise


def test_summary_ratios_by_hand() -> None:
    results = {
        "rollout": {
            "fast": {"tokens_per_second": 300.0},
            "hf": {"tokens_per_second": 100.0},
            "attention": {"fast": "sdpa_gqa", "hf": "sdpa"},  # not an engine
            "greedy_identical": True,
        },
        "smarttuner": {"steps": [{"step_seconds": 10.0}, {"step_seconds": 30.0}]},  # mean 20
        "trl": {"steps": [{"step_seconds": 100.0}, {"step_seconds": 140.0}]},  # mean 120
    }
    summary = summarise(results)
    assert summary["rollout_speedup_vs_generate"] == pytest.approx(3.0)
    assert summary["smarttuner_speedup_vs_trl"] == pytest.approx(6.0)
    assert "smarttuner-bf16_speedup_vs_trl" not in summary
    assert "smarttuner_speedup_vs_trl_per_token" not in summary  # no lengths logged


def test_per_token_ratio_corrects_for_sampled_lengths() -> None:
    results = {
        # SmartTuner: 20 s per step at 50 tokens per completion on average
        "smarttuner": {
            "steps": [
                {"step_seconds": 10.0, "completion_length": 40.0},
                {"step_seconds": 30.0, "completion_length": 60.0},
            ]
        },
        # TRL: 120 s per step at 100 tokens: 1.2 s per token against SmartTuner's 0.4
        "trl": {
            "steps": [{"step_seconds": 100.0}, {"step_seconds": 140.0}],
            "completion_length": [90.0, 110.0],
        },
    }
    summary = summarise(results)
    assert summary["smarttuner_speedup_vs_trl"] == pytest.approx(6.0)
    assert summary["mean_completion_length"] == {"smarttuner": 50.0, "trl": 100.0}
    assert summary["smarttuner_speedup_vs_trl_per_token"] == pytest.approx(3.0)


def _tiny(model_dir: str) -> BenchSettings:
    return BenchSettings(
        model=model_dir,
        task="arithmetic",
        prompts=2,
        num_generations=4,
        max_new_tokens=6,
        batch_size=4,
        steps=2,
    )


def test_bench_workers_on_the_tiny_model(tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "bench.json"
    results = run_bench(_tiny(tiny_model_dir), out, ["rollout", "smarttuner"], say=lambda _: None)
    assert out.is_file()
    assert len(results["smarttuner"]["steps"]) == 2
    step = results["smarttuner"]["steps"][0]
    assert {"time/generate", "time/logprobs", "time/train", "step_seconds"} <= set(step)
    assert results["rollout"]["greedy_identical"] is True
    assert results["rollout"]["fast"]["tokens"] == 2 * 4 * 6  # no stop string: full budget
    runs = results["rollout"]["hf"]["runs_seconds"]  # timed twice, alternating with fast
    assert len(runs) == 2 and results["rollout"]["hf"]["seconds"] == pytest.approx(sum(runs) / 2)
    assert results["smarttuner"]["peak_rss_mb"] > 0
    assert "rollout_speedup_vs_generate" in results["summary"]
    assert results["rollout"]["hf-bf16"]["tokens"] > 0  # both engines also on bf16 weights
    assert results["rollout"]["greedy_identical-bf16"] is True  # same attention in both
    assert isinstance(results["rollout"]["greedy_identical_stock_sdpa-bf16"], bool)
    assert "rollout_bf16_speedup_vs_generate_bf16" in results["summary"]
    assert bench_table(results).row_count >= 5


@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="bench extra (trl) absent")
def test_trl_worker_on_the_tiny_model(tiny_model_dir) -> None:
    results = run_bench(_tiny(tiny_model_dir), None, ["smarttuner", "trl"], say=lambda _: None)
    assert len(results["trl"]["steps"]) == 2
    assert results["summary"]["smarttuner_speedup_vs_trl"] > 0


def test_equal_length_makes_every_completion_full_length(tiny_model_dir) -> None:
    kinds = ["smarttuner"] + (["trl"] if importlib.util.find_spec("trl") else [])
    settings = dataclasses.replace(_tiny(tiny_model_dir), equal_length=True)
    results = run_bench(settings, None, kinds, say=lambda _: None)
    assert results["settings"]["equal_length"] is True
    assert results["summary"]["mean_completion_length"] == {k: 6.0 for k in kinds}


def test_trl_runs_with_the_stock_allocator_and_ours_with_freed_memory_kept() -> None:
    from smarttuner import malloc
    from smarttuner.bench.run import worker_env

    assert worker_env("trl")[malloc.ENV_SWITCH] == "0"
    assert worker_env("smarttuner-bf16").get(malloc.ENV_SWITCH) != "0"
