"""Run the benchmark workers one after another and compare what they measured."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from statistics import mean
from typing import Any

from smarttuner import malloc
from smarttuner.bench.settings import BenchSettings
from smarttuner.outputs import write_json

log = logging.getLogger(__name__)


# TRL runs with glibc's stock allocator settings, as its users run it: SmartTuner's
# `malloc.keep_freed_memory` would otherwise reach it through our model loader (with it, TRL's
# step took 161 s instead of ~190 s in benchmarks/results/bench-2026-11-30c.json).
STOCK_ALLOCATOR = {"trl"}


def worker_env(kind: str) -> dict[str, str]:
    env = dict(os.environ)
    if kind in STOCK_ALLOCATOR:
        env[malloc.ENV_SWITCH] = "0"
    return env


def run_worker(kind: str, settings: BenchSettings) -> dict[str, Any]:
    """One measurement in a fresh process; its last `BENCH-RESULT` line is the answer."""
    cmd = [sys.executable, "-m", "smarttuner.bench.workers", kind, json.dumps(settings.to_dict())]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=worker_env(kind))
    lines = [x for x in proc.stdout.splitlines() if x.startswith("BENCH-RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"bench worker {kind!r} failed (exit {proc.returncode}): {tail}")
    return json.loads(lines[-1].removeprefix("BENCH-RESULT "))


def trl_available() -> bool:
    return (
        importlib.util.find_spec("trl") is not None
        and importlib.util.find_spec("datasets") is not None
    )


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Ratios between numbers measured in this run."""
    out: dict[str, Any] = {}
    roll = results.get("rollout")
    if roll:
        tps = {
            k: v["tokens_per_second"]
            for k, v in roll.items()
            if isinstance(v, dict) and "tokens_per_second" in v  # engines, not settings
        }
        out["rollout_speedup_vs_generate"] = tps["fast"] / tps["hf"]
        if "fast-bf16" in tps:  # both engines on bf16 weights; and bf16 fast vs fp32 generate
            out["rollout_bf16_speedup_vs_generate_bf16"] = tps["fast-bf16"] / tps["hf-bf16"]
            out["rollout_bf16_speedup_vs_generate"] = tps["fast-bf16"] / tps["hf"]
    step = {
        k: mean(x["step_seconds"] for x in v["steps"])
        for k, v in results.items()
        if isinstance(v, dict) and isinstance(v.get("steps"), list)
    }
    out["mean_step_seconds"] = step
    length = _mean_completion_lengths(results)
    if length:
        out["mean_completion_length"] = length
    if "trl" in step:
        for k in ("smarttuner", "smarttuner-bf16"):
            if k in step:
                out[f"{k}_speedup_vs_trl"] = step["trl"] / step[k]
            if k in length and "trl" in length:  # sampled lengths differ between systems
                per_token = (step["trl"] / length["trl"]) / (step[k] / length[k])
                out[f"{k}_speedup_vs_trl_per_token"] = per_token
    return out


def _mean_completion_lengths(results: dict[str, Any]) -> dict[str, float]:
    """Mean sampled completion length per system (SmartTuner logs it per step, TRL per step in
    a list); step times scale with it, and it varies from run to run."""
    out = {}
    for k, v in results.items():
        if not isinstance(v, dict) or not isinstance(v.get("steps"), list):
            continue
        lengths = v.get("completion_length") or [x.get("completion_length") for x in v["steps"]]
        if lengths and all(isinstance(x, int | float) for x in lengths):
            out[k] = mean(lengths)
    return out


def run_bench(
    settings: BenchSettings,
    output: Path | None = None,
    kinds: list[str] | None = None,
    say: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    kinds = kinds or ["rollout", "smarttuner", "smarttuner-bf16"] + (
        ["trl"] if trl_available() else []
    )
    if "trl" in kinds and not trl_available():
        raise ValueError(
            "the TRL comparison needs the bench extra: pip install 'smarttuner[bench]'"
        )
    results: dict[str, Any] = {"settings": settings.to_dict()}
    for kind in kinds:
        say(f"bench: {kind} …")
        results[kind] = run_worker(kind, settings)
    results["summary"] = summarise(results)
    if output is not None:
        write_json(output, results)
    return results
