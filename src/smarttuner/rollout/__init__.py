"""Rollout engines: sample G completions per prompt and return a `RolloutBatch`.

Engines register by name; `generate` dispatches. 'fast' is SmartTuner's KV-cache loop
(default), 'hf' is transformers `generate`.
"""

from __future__ import annotations

from collections.abc import Callable

from smarttuner.rollout.fast import generate_fast
from smarttuner.rollout.hf import generate_hf
from smarttuner.rollout.types import RolloutBatch, SamplingParams

Engine = Callable[..., RolloutBatch]
ENGINES: dict[str, Engine] = {"fast": generate_fast, "hf": generate_hf}


def get_engine(name: str) -> Engine:
    """'auto' is the fast engine; an unknown name is an error listing the known ones."""
    key = "fast" if name == "auto" else name
    if key not in ENGINES:
        raise ValueError(f"unknown rollout engine {name!r}; use one of auto, {', '.join(ENGINES)}")
    return ENGINES[key]


__all__ = ["ENGINES", "Engine", "RolloutBatch", "SamplingParams", "get_engine"]
