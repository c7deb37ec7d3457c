"""`smarttuner pipeline`: probe → baseline eval → SFT (when needed) → eval → GRPO → eval →
plots, all in one output directory:

    OUTPUT/probe.json            warm-up probe and the decision it led to
    OUTPUT/sft/                  SFT run (metrics.jsonl, model/, plots/)
    OUTPUT/grpo/                 GRPO run (metrics.jsonl, completions.jsonl, model/, plots/)
    OUTPUT/results/sft_<task>_<model>.json, grpo_<task>_<model>.json, summary.json

With `run_grpo: false` it stops after SFT and an evaluation of the SFT model made the way
GRPO's evaluation at step 0 would make it: the SFT-only control of a recipe (give it as much
more SFT as the GRPO stage cost; `cpu_seconds` in the summary says what each stage cost).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smarttuner.config import PipelineConfig, SFTConfig, dump_config
from smarttuner.evaluate import EvalResult
from smarttuner.evaluate.probe import needs_warmup, probe_model, sft_decision
from smarttuner.grpo.trainer import evaluate_model, prepare_data, run_eval, train_grpo
from smarttuner.malloc import release_freed_memory
from smarttuner.memory import peak_rss_mb
from smarttuner.models import load_model
from smarttuner.outputs import prepare_output_dir, removed_if_failed_at_start, write_json
from smarttuner.progress import STAGE_LABELS
from smarttuner.rollout.policy_copy import policy_copy_dtype, sampling_view
from smarttuner.sft import train_sft

log = logging.getLogger(__name__)

CONFIG_FILE = "pipeline_config.yaml"  # the config a pipeline run writes first
Say = Callable[[str], None]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text).name if "/" in text else text).strip("-")


def sft_config(cfg: PipelineConfig, out: Path) -> SFTConfig:
    return SFTConfig(
        model=cfg.model,
        lora=cfg.lora,
        task=cfg.task,
        sft=cfg.sft,
        eval=cfg.eval,
        seed=cfg.seed,
        output_dir=out / "sft",
        overwrite=True,
        report_to=cfg.report_to,
    )


def _probe_and_baseline(
    cfg: PipelineConfig, data, out: Path, say: Say
) -> tuple[dict, EvalResult | None]:
    """(probe record, baseline eval) of the starting model, written to OUTPUT (the baseline's
    metrics); no baseline with `eval.baseline: false`. Both sample from what GRPO's rollouts
    and evals sample from (the merged copy under `model.autocast`), so the baseline and the
    later evals share numerics."""
    model, tokenizer = load_model(cfg.model, lora=None, trainable=False)
    with sampling_view(model, cfg.model.autocast, policy_copy_dtype(cfg)) as sampler:
        say("probe: can GRPO learn from the starting model?")
        p = cfg.probe
        probe = probe_model(
            sampler,
            tokenizer,
            data.task,
            data.train[: p.num_prompts],
            k=p.k,
            temperature=cfg.generation.temperature,
            top_p=cfg.generation.top_p,
            max_new_tokens=p.max_new_tokens,
            engine=cfg.generation.engine,
            seed=cfg.seed,
        )
        do_sft, decision = sft_decision(
            cfg.run_sft, *needs_warmup(probe, p.min_format_rate, p.min_signal)
        )
        record = {**probe.to_dict(), "run_sft": do_sft, "reason": decision}
        write_json(out / "probe.json", record)
        if not cfg.eval.baseline:
            return record, None
        say(f"baseline eval on {len(data.eval)} held-out prompts (seed {cfg.task.eval_seed})")
        baseline = run_eval(sampler, tokenizer, data, cfg)
    write_json(out / "baseline.json", baseline.metrics())
    return record, baseline


class _CPUClock:
    """CPU seconds (user + system, all threads) of this process spent per stage; with 2 cores
    busy, wall time understates the cost of a stage by up to 2×, and another job on the
    machine inflates wall time but not this. Also the process's peak RSS at the end of each
    stage (`peaks`): a stage whose figure is above the previous one's set a new peak."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self.peaks: dict[str, float] = {}
        self._last = self._first = time.process_time()

    def lap(self, stage: str) -> None:
        """End `stage`: its CPU time and the peak so far; what it freed goes back to the OS."""
        now = time.process_time()
        self.laps[stage] = now - self._last
        self.peaks[stage] = peak_rss_mb()
        release_freed_memory()
        self._last = time.process_time()

    def summary(self) -> dict[str, float]:
        return {**self.laps, "total": time.process_time() - self._first}


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def run_pipeline(
    cfg: PipelineConfig,
    say: Say = log.info,
    on_step: Callable[[int, dict[str, Any]], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_sft_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Probe, baseline, SFT when needed, GRPO, evaluations and plots. With `resume`, finished
    stages (probe and baseline, SFT) are read back from OUTPUT and GRPO continues from its
    newest checkpoint."""
    resuming = bool(cfg.resume)
    path = Path(cfg.output_dir)
    with removed_if_failed_at_start(path, (CONFIG_FILE,)):
        out = prepare_output_dir(path, cfg.overwrite, resume=resuming)
        dump_config(cfg, out / CONFIG_FILE)
        return _run_stages(cfg, out, resuming, say, on_step, on_epoch, on_sft_step)


def _run_stages(
    cfg: PipelineConfig,
    out: Path,
    resuming: bool,
    say: Say,
    on_step: Callable[[int, dict[str, Any]], None] | None,
    on_epoch: Callable[[dict[str, Any]], None] | None,
    on_sft_step: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    start, cpu = time.perf_counter(), _CPUClock()
    data = prepare_data(cfg)
    results_dir = out / "results"
    tag = f"{_slug(cfg.task.name)}_{_slug(cfg.model.name)}"
    probe, baseline = (_read(out / "probe.json"), _read(out / "baseline.json"))
    baseline_eval = None  # per prompt too, when measured in this process (not read back)
    if not (resuming and probe and (baseline or not cfg.eval.baseline)):
        probe, baseline_eval = _probe_and_baseline(cfg, data, out, say)
        baseline = baseline_eval.metrics() if baseline_eval else None
    cpu.lap("probe_and_baseline")
    say(probe["reason"])
    if baseline:
        say(_fmt("baseline", baseline))
    do_sft = bool(probe["run_sft"])
    summary: dict[str, Any] = {
        "model": cfg.model.name,
        "task": cfg.task.name,
        "baseline": baseline,
        "probe": probe,
        "sft_ran": do_sft,
    }
    grpo_start = cfg.model.name
    if do_sft:
        sft_file = results_dir / f"sft_{tag}.json"
        sft_results = _read(sft_file) if resuming else None
        if sft_results is None or not Path(sft_results["model_dir"]).is_dir():
            say(
                f"SFT: {cfg.sft.num_datapoints} {cfg.sft.source} traces, "
                f"{cfg.sft.num_epochs} epochs"
            )
            sft_results = train_sft(sft_config(cfg, out), on_epoch=on_epoch, on_step=on_sft_step)
            write_json(sft_file, sft_results)
            _plot(out / "sft")
        else:
            say(f"SFT already done: {sft_results['model_dir']}")
        grpo_start = sft_results["model_dir"]
        cpu.lap("sft")

    grpo_cfg = cfg.model_copy(update={"output_dir": out / "grpo", "overwrite": not resuming})
    grpo_cfg = _as_grpo(
        grpo_cfg.model_copy(update={"model": cfg.model.model_copy(update={"name": grpo_start})})
    )
    if cfg.run_grpo:
        say(f"GRPO: {cfg.num_iterations} iterations from {grpo_start}")
        # with no SFT, GRPO starts from the model the baseline scored, through the same path
        # (tests/unit/test_pipeline.py): its step-0 eval would repeat the baseline
        grpo_results = train_grpo(
            grpo_cfg, on_step=on_step, start_eval=None if do_sft else baseline_eval
        )
        if do_sft and "baseline" in grpo_results:  # GRPO's step-0 eval is the SFT model's
            summary["after_sft"] = grpo_results["baseline"]
        summary["final"] = grpo_results["final"]
        if "paired" in grpo_results:  # final against GRPO's start, prompt by prompt
            against = STAGE_LABELS["after_sft" if do_sft else "baseline"]  # its table column
            summary["paired"] = {**grpo_results["paired"], "against": against}
        write_json(
            results_dir / f"grpo_{tag}.json",
            {**grpo_results, "baseline": baseline, "after_sft": summary.get("after_sft")},
        )
        _plot(out / "grpo")
        cpu.lap("grpo")
        model_dir = grpo_results["model_dir"]
    else:
        say(f"no GRPO (run_grpo: false): eval of {grpo_start}")
        final = evaluate_model(grpo_cfg, data).metrics()
        if do_sft:
            summary["after_sft"] = final
        summary["final"] = final
        cpu.lap("final_eval")
        model_dir = grpo_start
    summary.update(
        model_dir=model_dir,
        total_seconds=time.perf_counter() - start,
        cpu_seconds=cpu.summary(),
        peak_rss_mb=cpu.peaks,
    )
    write_json(results_dir / "summary.json", summary)
    write_json(out / "results.json", summary)
    return summary


def _as_grpo(cfg: PipelineConfig):
    from smarttuner.config import GRPOConfig

    fields = {k: v for k, v in cfg.model_dump().items() if k in GRPOConfig.model_fields}
    return GRPOConfig.model_validate(fields)


def _plot(run_dir: Path) -> None:
    from smarttuner.plots import plot_run

    try:
        plot_run(run_dir)
    except Exception as err:  # a figure must never cost the run its results
        log.warning("plots for %s failed: %s", run_dir, err)


def _fmt(stage: str, metrics: dict[str, float]) -> str:
    return (
        f"{stage}: accuracy {metrics['accuracy']:.3f}, format {metrics['format_rate']:.3f}, "
        f"length {metrics['mean_length']:.0f}"
    )
