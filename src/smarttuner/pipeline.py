"""`smarttuner pipeline`: probe → baseline eval → SFT (when needed) → eval → GRPO → eval →
plots, all in one output directory:

    OUTPUT/probe.json            warm-up probe and the decision it led to
    OUTPUT/sft/                  SFT run (metrics.jsonl, model/, plots/)
    OUTPUT/grpo/                 GRPO run (metrics.jsonl, completions.jsonl, model/, plots/)
    OUTPUT/results/sft_<task>_<model>.json, grpo_<task>_<model>.json, summary.json
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smarttuner.config import PipelineConfig, SFTConfig, dump_config
from smarttuner.evaluate.probe import needs_warmup, probe_model
from smarttuner.grpo.trainer import prepare_data, run_eval, train_grpo
from smarttuner.models import load_model
from smarttuner.outputs import prepare_output_dir, write_json
from smarttuner.sft import train_sft

log = logging.getLogger(__name__)
Say = Callable[[str], None]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text).name if "/" in text else text).strip("-")


def sft_config(cfg: PipelineConfig, out: Path) -> SFTConfig:
    return SFTConfig(
        model=cfg.model,
        lora=cfg.lora,
        task=cfg.task,
        sft=cfg.sft,
        seed=cfg.seed,
        output_dir=out / "sft",
        overwrite=True,
    )


def run_pipeline(
    cfg: PipelineConfig,
    say: Say = log.info,
    on_step: Callable[[int, dict[str, Any]], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    out = prepare_output_dir(Path(cfg.output_dir), cfg.overwrite)
    dump_config(cfg, out / "pipeline_config.yaml")
    start = time.perf_counter()
    data = prepare_data(cfg)
    model, tokenizer = load_model(cfg.model, lora=None, trainable=False)

    say("probe: can GRPO learn from the starting model?")
    p = cfg.probe
    probe = probe_model(
        model,
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
    warm, reason = needs_warmup(probe, p.min_format_rate, p.min_signal)
    do_sft = cfg.run_sft == "always" or (cfg.run_sft == "auto" and warm)
    decision = f"{'running' if do_sft else 'skipping'} SFT ({cfg.run_sft}): {reason}"
    say(decision)
    write_json(out / "probe.json", {**probe.to_dict(), "run_sft": do_sft, "reason": decision})

    say(f"baseline eval on {len(data.eval)} held-out prompts (seed {cfg.task.eval_seed})")
    baseline = run_eval(model, tokenizer, data, cfg).metrics()
    say(_fmt("baseline", baseline))
    del model

    results_dir = out / "results"
    tag = f"{_slug(cfg.task.name)}_{_slug(cfg.model.name)}"
    summary: dict[str, Any] = {
        "model": cfg.model.name,
        "task": cfg.task.name,
        "baseline": baseline,
        "probe": probe.to_dict(),
        "sft_ran": do_sft,
    }
    grpo_start = cfg.model.name
    if do_sft:
        say(f"SFT: {cfg.sft.num_datapoints} {cfg.sft.source} traces, {cfg.sft.num_epochs} epochs")
        sft_results = train_sft(sft_config(cfg, out), on_epoch=on_epoch)
        grpo_start = sft_results["model_dir"]
        write_json(results_dir / f"sft_{tag}.json", sft_results)
        _plot(out / "sft")

    say(f"GRPO: {cfg.num_iterations} iterations from {grpo_start}")
    grpo_cfg = cfg.model_copy(update={"output_dir": out / "grpo", "overwrite": True})
    grpo_cfg = grpo_cfg.model_copy(
        update={"model": cfg.model.model_copy(update={"name": grpo_start})}
    )
    grpo_results = train_grpo(_as_grpo(grpo_cfg), on_step=on_step)
    if do_sft:
        summary["after_sft"] = grpo_results["baseline"]
    summary["final"] = grpo_results["final"]
    write_json(
        results_dir / f"grpo_{tag}.json",
        {**grpo_results, "baseline": baseline, "after_sft": summary.get("after_sft")},
    )
    _plot(out / "grpo")
    summary.update(model_dir=grpo_results["model_dir"], total_seconds=time.perf_counter() - start)
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
