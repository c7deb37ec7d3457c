"""The one-command pipeline on the tiny model: every stage runs and writes its files."""

from __future__ import annotations

import json

import pytest
import torch

from smarttuner import pipeline
from smarttuner.config import PipelineConfig, build_config
from smarttuner.grpo import trainer
from smarttuner.pipeline import run_pipeline


def _tiny_pipeline(model_dir: str, out, **extra) -> dict:
    """A pipeline small enough for the tiny model; `extra` overrides any key."""
    return {
        "model.name": model_dir,
        "task.name": "arithmetic",
        "output_dir": str(out),
        "num_iterations": 1,
        "grpo.exploration_batchsize": 2,
        "grpo.num_generations": 2,
        "optim.batch_size": 4,
        "generation.max_new_tokens": 6,
        "eval.num_examples": 2,
        "probe.num_prompts": 2,
        "probe.k": 2,
        "probe.max_new_tokens": 6,
        "sft.num_datapoints": 4,
        "sft.num_epochs": 1,
        "sft.batch_size": 4,
        "sft.val_eval_examples": 1,
        "sft.max_new_tokens": 6,
        **extra,
    }


def test_pipeline_runs_every_stage(tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "pipe"
    cfg = build_config(
        PipelineConfig,
        None,
        _tiny_pipeline(
            tiny_model_dir,
            out,
            **{
                "generation.max_new_tokens": 8,
                "eval.num_examples": 4,
                "probe.max_new_tokens": 8,
                "sft.num_datapoints": 8,
                "sft.val_eval_examples": 2,
                "sft.max_new_tokens": 8,
            },
        ),
    )
    said: list[str] = []
    summary = run_pipeline(cfg, say=said.append)
    # the random tiny model writes no tags: the probe must call for warm-up and say why
    probe = json.loads((out / "probe.json").read_text())
    assert probe["run_sft"] is True and "format rate" in probe["reason"]
    assert any("running SFT" in s for s in said)
    assert {"baseline", "after_sft", "final"} <= set(summary)
    assert (out / "sft" / "model" / "adapter_model.safetensors").is_file()
    assert (out / "grpo" / "model" / "adapter_model.safetensors").is_file()
    assert (out / "results" / "sft_arithmetic_tiny-llama0.json").is_file() or any(
        p.name.startswith("sft_arithmetic_") for p in (out / "results").iterdir()
    )
    assert any(p.name.startswith("grpo_arithmetic_") for p in (out / "results").iterdir())
    assert (out / "grpo" / "plots" / "grpo_reward.png").stat().st_size > 0
    grpo_cfg = (out / "grpo" / "config.yaml").read_text()
    assert str(out / "sft" / "model") in grpo_cfg  # GRPO started from the SFT adapter
    # the final model paired with GRPO's start (the SFT model) on the same 4 prompts
    paired = summary["paired"]
    assert paired["against"] == "after SFT"
    greedy = paired["greedy"]
    before, after = greedy["correct"]["baseline"], greedy["correct"]["final"]
    assert len(before) == len(after) == 4
    assert greedy["gained"] == sum(a and not b for b, a in zip(before, after, strict=True))
    assert sum(after) / 4 == summary["final"]["accuracy"]
    assert sum(before) / 4 == summary["after_sft"]["accuracy"]


def test_pipeline_never_sft_skips_it(tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "pipe"
    cfg = build_config(PipelineConfig, None, _tiny_pipeline(tiny_model_dir, out, run_sft="never"))
    summary = run_pipeline(cfg, say=lambda _: None)
    assert summary["sft_ran"] is False and "after_sft" not in summary
    assert not (out / "sft").exists()
    # the tiny model writes no tags, so the probe asked for SFT: the line says it was overruled
    reason = json.loads((out / "probe.json").read_text())["reason"]
    assert reason.startswith("skipping SFT (run_sft: never, overriding the probe): format rate")


def test_pipeline_without_baseline_evals_only_the_final_model(tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "pipe"
    values = _tiny_pipeline(tiny_model_dir, out, run_sft="always", **{"eval.baseline": False})
    said: list[str] = []
    summary = run_pipeline(build_config(PipelineConfig, None, values), say=said.append)
    assert summary["baseline"] is None and "after_sft" not in summary
    assert summary["final"]["accuracy"] is not None
    assert not (out / "baseline.json").exists()
    assert not any(s.startswith("baseline") for s in said)  # neither eval nor its line
    assert (out / "grpo" / "model" / "adapter_model.safetensors").is_file()


def test_pipeline_resume_reuses_finished_stages(tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "pipe"
    values = _tiny_pipeline(tiny_model_dir, out, checkpoint_every=1)
    first = run_pipeline(build_config(PipelineConfig, None, values), say=lambda _: None)
    sft_weights = (out / "sft" / "model" / "adapter_model.safetensors").read_bytes()
    said: list[str] = []
    again = run_pipeline(
        build_config(PipelineConfig, None, {**values, "resume": "auto", "num_iterations": 2}),
        say=said.append,
    )
    assert any("SFT already done" in s for s in said)
    assert not any(s.startswith("probe:") for s in said)  # probe and baseline read back
    assert (out / "sft" / "model" / "adapter_model.safetensors").read_bytes() == sft_weights
    assert again["baseline"] == first["baseline"]
    steps = [
        line
        for line in (out / "grpo" / "metrics.jsonl").read_text().splitlines()
        if '"phase": "grpo"' in line
    ]
    assert len(steps) == 2  # iteration 1 kept from the first run, iteration 2 added


def test_pipeline_without_grpo_is_the_sft_only_control(tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "pipe"
    cfg = build_config(
        PipelineConfig, None, _tiny_pipeline(tiny_model_dir, out, run_sft="always", run_grpo=False)
    )
    said: list[str] = []
    summary = run_pipeline(cfg, say=said.append)
    assert not (out / "grpo").exists()
    assert summary["final"] == summary["after_sft"]
    assert summary["model_dir"] == str(out / "sft" / "model")
    assert any("no GRPO" in s for s in said)
    cpu = summary["cpu_seconds"]
    assert set(cpu) == {"probe_and_baseline", "sft", "final_eval", "total"}
    assert all(v >= 0 for v in cpu.values())
    assert cpu["total"] >= cpu["sft"] > 0
    assert json.loads((out / "results.json").read_text())["cpu_seconds"] == cpu
    peaks = summary["peak_rss_mb"]  # the process's peak after each stage, in stage order
    assert list(peaks) == ["probe_and_baseline", "sft", "final_eval"]
    assert 0 < peaks["probe_and_baseline"] <= peaks["sft"] <= peaks["final_eval"]


def test_sft_only_eval_equals_grpo_eval_at_step_0(tiny_model_dir, tmp_path) -> None:
    """The control's evaluation is made the way GRPO evaluates its starting model (here through
    the merged bf16 sampling copy, as in the recipes)."""
    values = _tiny_pipeline(
        tiny_model_dir, tmp_path / "a", run_sft="always", **{"model.autocast": "bfloat16"}
    )
    with_grpo = run_pipeline(build_config(PipelineConfig, None, values), say=lambda _: None)
    values = {**values, "output_dir": str(tmp_path / "b"), "run_grpo": False}
    control = run_pipeline(build_config(PipelineConfig, None, values), say=lambda _: None)
    assert control["after_sft"] == with_grpo["after_sft"]
    assert set(with_grpo["cpu_seconds"]) == {"probe_and_baseline", "sft", "grpo", "total"}


def test_baseline_eval_is_grpo_eval_at_step_0(tiny_adapter_dir, tmp_path, logit_spy) -> None:
    """Starting from an adapter, the pipeline's baseline and GRPO's own eval before its first
    update score the model through the same numerics (merged bf16 copy under autocast): a
    gain is never a difference between two evaluation paths. This is what lets the pipeline
    hand its baseline to GRPO as the step-0 eval instead of running it twice."""
    seen, install = logit_spy
    install(pipeline, "run_eval")  # the baseline
    values = _tiny_pipeline(tiny_adapter_dir, tmp_path / "pipe", run_sft="never")
    values["model.autocast"] = "bfloat16"
    cfg = build_config(PipelineConfig, None, values)
    pipeline._probe_and_baseline(cfg, trainer.prepare_data(cfg), tmp_path, lambda _: None)
    install(trainer, "run_eval")  # GRPO's evals, run on their own: step 0, then the final one
    grpo_cfg = pipeline._as_grpo(cfg.model_copy(update={"output_dir": tmp_path / "grpo"}))
    trainer.train_grpo(grpo_cfg)
    assert len(seen) == 3 and torch.equal(seen[0], seen[1])  # baseline, step 0 (then final)
    grpo = json.loads((tmp_path / "grpo" / "results.json").read_text())
    assert json.loads((tmp_path / "baseline.json").read_text()) == grpo["baseline"]


def test_pipeline_without_sft_evaluates_the_start_once(tiny_adapter_dir, tmp_path, logit_spy):
    """With no SFT, GRPO's step-0 eval is the baseline's: recorded, not run again."""
    seen, install = logit_spy
    install(pipeline, "run_eval")
    install(trainer, "run_eval")
    out = tmp_path / "pipe"
    values = _tiny_pipeline(tiny_adapter_dir, out, run_sft="never")
    summary = run_pipeline(build_config(PipelineConfig, None, values), say=lambda _: None)
    assert len(seen) == 2  # the baseline and GRPO's final eval
    grpo = json.loads((out / "grpo" / "results.json").read_text())
    assert grpo["baseline"] == summary["baseline"]
    assert "baseline_correct" not in grpo  # the handed-over per-prompt results end in `paired`
    assert summary["paired"]["against"] == "baseline"
    assert (
        sum(summary["paired"]["greedy"]["correct"]["baseline"]) / 2
        == (summary["baseline"]["accuracy"])
    )
    rows = [json.loads(line) for line in (out / "grpo" / "metrics.jsonl").read_text().splitlines()]
    step0 = next(r for r in rows if r["phase"] == "eval" and r["step"] == 0)
    assert {k: step0[k] for k in summary["baseline"]} == summary["baseline"]


def test_a_pipeline_stopped_by_bad_input_leaves_no_output_dir(tiny_model_dir, tmp_path) -> None:
    """An unknown task or a missing model fails before any stage: the new output directory
    goes again, so the corrected command runs without --overwrite; a directory that held
    something before keeps it."""
    out = tmp_path / "run"
    bad = {"task.name": "no_such_task"}, {"model.name": str(tmp_path / "missing_model")}
    for wrong in bad:
        cfg = build_config(PipelineConfig, None, _tiny_pipeline(tiny_model_dir, out, **wrong))
        with pytest.raises(Exception, match="no_such_task|missing_model"):
            run_pipeline(cfg)
        assert not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    cfg = build_config(
        PipelineConfig, None, _tiny_pipeline(tiny_model_dir, out, overwrite=True, **bad[0])
    )
    with pytest.raises(Exception, match="no_such_task"):
        run_pipeline(cfg)
    assert (out / "notes.txt").read_text() == "mine"
