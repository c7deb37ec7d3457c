"""A merged, low-precision copy of the policy to sample from.

The trained model is a LoRA-wrapped float32 model; under bf16 autocast every decode step
recasts all of its weights and runs two extra small matmuls per adapted layer. Decoding is a
forward of batch ~48 per token, so that overhead is paid every step. `PolicyCopy` keeps a plain
model whose weights are `W + scale · B A`, stored in the autocast dtype, and refreshes it from
the trained model before each rollout (a copy of ~135M numbers: a fraction of a second).

Numerically the copy is the same policy rounded once to bf16 instead of per operation, like
a vLLM sampler beside a PyTorch trainer; the log-probabilities that enter the loss are
still computed by the trained model.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from transformers import PreTrainedModel

from smarttuner.config import GRPOConfig
from smarttuner.models import autocast_context, is_peft

ACTIVE = "<active adapter>"


def plain_name(name: str, adapter: str = "default") -> str:
    """Name in the merged model: 'base_model.model.x.base_layer.weight' -> 'x.weight'."""
    name = name.removeprefix("base_model.model.").replace(".base_layer.", ".")
    return name.replace(f".modules_to_save.{adapter}.", ".")


class PolicyCopy:
    """A frozen copy of `model` with LoRA merged in, in `dtype`; `refresh(model)` re-syncs it.

    `adapter` is the LoRA adapter folded in: the active one by default (the policy), another
    name (the frozen reference adapter), or None for the base weights alone (the reference
    when the adapter is simply disabled)."""

    def __init__(
        self, model: PreTrainedModel, dtype: torch.dtype, adapter: str | None = ACTIVE
    ) -> None:
        self.adapter = model.active_adapter if adapter == ACTIVE and is_peft(model) else adapter
        source = copy.deepcopy(model)
        plain = source.merge_and_unload() if is_peft(source) else source
        self.model = plain.to(dtype).eval().requires_grad_(False)
        self._params = dict(self.model.named_parameters(remove_duplicate=False))
        self.refresh(model)

    @torch.no_grad()
    def refresh(self, model: PreTrainedModel) -> None:
        """Copy the trained model's current weights (LoRA merged) into the copy."""
        if not is_peft(model):
            for name, p in model.named_parameters():
                self._params[name].copy_(p)
            return
        from peft.tuners.lora import LoraLayer

        adapter = self.adapter
        # W + scale · B A in the weights' own dtype, rounded once into the copy: under an
        # ambient autocast B A would be a bf16 matmul, and the copy would depend on where
        # it was refreshed (a pipeline's baseline eval against GRPO's step-0 eval)
        with torch.autocast(model.device.type, enabled=False):
            for name, module in model.named_modules():
                if isinstance(module, LoraLayer):
                    weight = module.base_layer.weight
                    if adapter in module.lora_A:
                        weight = weight + module.get_delta_weight(adapter)
                    self._params[plain_name(f"{name}.weight")].copy_(weight)
        if adapter is None:
            return
        for name, p in model.named_parameters():  # anything else being trained (modules_to_save)
            if p.requires_grad and "lora_" not in name:
                self._params[plain_name(name, adapter)].copy_(p)


def policy_copy_dtype(cfg: GRPOConfig) -> torch.dtype | None:
    """The dtype of the sampling copy `cfg` asks for, or None for no copy. 'auto' makes one
    when training under autocast with an in-process engine (vLLM holds its own weights; a
    4-bit model cannot be merged)."""
    return copy_dtype_for(
        cfg.generation.policy_copy,
        cfg.model.autocast,
        cfg.generation.engine,
        cfg.model.load_in_4bit,
    )


def copy_dtype_for(
    setting: str, autocast: str, engine: str = "auto", load_in_4bit: bool = False
) -> torch.dtype | None:
    """`policy_copy_dtype` from its four inputs (for callers without a GRPOConfig)."""
    if setting == "off" or (setting == "auto" and autocast == "none"):
        return None
    if engine == "vllm" or load_in_4bit:
        if setting == "on":
            raise ValueError(
                "generation.policy_copy 'on' needs the fast or hf engine and a model that is "
                "not loaded in 4 bits"
            )
        return None
    return getattr(torch, autocast) if autocast != "none" else torch.float32


@contextlib.contextmanager
def sampling_view(
    model: PreTrainedModel, autocast: str, copy_dtype: torch.dtype | None
) -> Iterator[PreTrainedModel]:
    """The model to sample from, with `autocast` entered: a merged copy in `copy_dtype`, or
    `model` itself for None. Evaluations that go through this with the same settings as a
    GRPO run's rollouts see the same numerics; in bf16, greedy decoding of a 135M model flips
    a few prompts in a hundred against float32, enough to fake or hide a small gain when a
    baseline and a final eval take different paths."""
    sampler = PolicyCopy(model, copy_dtype).model if copy_dtype is not None else model
    with autocast_context(autocast, model.device):
        yield sampler
