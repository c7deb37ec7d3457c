"""Rollout engines: sample G completions per prompt and return a `RolloutBatch`.

Every engine is called the same way, `engine(model, tokenizer, prompts, num_samples, params,
generator)`. Two kinds register by name:
- plain functions (`ENGINES`): 'fast' is SmartTuner's KV-cache loop (default), 'hf' is
  transformers `generate`. They read the live model, so there is nothing to keep in sync;
- stateful engines (`ENGINE_FACTORIES`), built on first use: 'vllm' keeps its own copy of the
  weights on the GPU. One instance per name lives for the process (the trainer asks for its
  engine every iteration), and `sync_weights(model)` pushes the policy into it after an
  optimizer step. `close_engines()` frees them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from smarttuner.rollout.fast import generate_fast
from smarttuner.rollout.hf import generate_hf
from smarttuner.rollout.types import RolloutBatch, SamplingParams

Engine = Callable[..., RolloutBatch]


class StatefulEngine(Protocol):
    """An engine that holds its own copy of the policy (vLLM)."""

    def __call__(
        self,
        model: PreTrainedModel,
        tokenizer: Tokenizer,
        prompts: list[list[int]],
        num_samples: int,
        params: SamplingParams,
        generator: torch.Generator | None = None,
    ) -> RolloutBatch: ...

    def sync_weights(self, model: PreTrainedModel) -> None:
        """Make the next rollout sample from `model`'s current weights."""

    def close(self) -> None:
        """Free the engine's memory (GPU weights, KV cache, temporary files)."""


def _build_vllm(**options: Any) -> StatefulEngine:
    from smarttuner.rollout.vllm_engine import VLLMEngine, VLLMSettings

    return VLLMEngine(VLLMSettings(**options))


ENGINES: dict[str, Engine] = {"fast": generate_fast, "hf": generate_hf}
ENGINE_FACTORIES: dict[str, Callable[..., StatefulEngine]] = {"vllm": _build_vllm}
_BUILT: dict[str, tuple[StatefulEngine, dict[str, Any]]] = {}  # name -> (engine, its options)


def get_engine(name: str, **options: Any) -> Engine:
    """The engine called `name` ('auto' is the fast engine); an unknown name is an error listing
    the known ones. A stateful engine is built on the first call (which is where a missing
    dependency or GPU is reported) with `options`, then the same instance is returned."""
    key = "fast" if name == "auto" else name
    if key in ENGINES:
        if options:
            raise ValueError(f"rollout engine {key!r} takes no options, got {sorted(options)}")
        return ENGINES[key]
    if key not in ENGINE_FACTORIES:
        known = ", ".join(["auto", *ENGINES, *ENGINE_FACTORIES])
        raise ValueError(f"unknown rollout engine {name!r}; use one of {known}")
    if key not in _BUILT:
        _BUILT[key] = (ENGINE_FACTORIES[key](**options), dict(options))
    engine, built_with = _BUILT[key]
    if options and options != built_with:
        raise ValueError(
            f"rollout engine {key!r} is already built with {built_with}; "
            f"call close_engines() before asking for {options}"
        )
    return engine


def on_model(engine: Engine, model: PreTrainedModel) -> Engine:
    """`engine` sampling from `model` whatever model it is called with (a policy copy)."""

    def run(_model, tokenizer, prompts, num_samples, params, generator=None) -> RolloutBatch:
        return engine(model, tokenizer, prompts, num_samples, params, generator)

    return run


def sync_weights(model: PreTrainedModel) -> None:
    """Push `model`'s current weights into every stateful engine built in this process. Call it
    after an optimizer step (before the next rollout); a no-op when only 'fast'/'hf' are used."""
    for engine, _ in _BUILT.values():
        engine.sync_weights(model)


def close_engines() -> None:
    """Close and forget every stateful engine (the next `get_engine` builds a fresh one)."""
    while _BUILT:
        _, (engine, _) = _BUILT.popitem()
        engine.close()


__all__ = [
    "ENGINES",
    "ENGINE_FACTORIES",
    "Engine",
    "RolloutBatch",
    "SamplingParams",
    "StatefulEngine",
    "close_engines",
    "get_engine",
    "on_model",
    "sync_weights",
]
