"""Fully sharded data parallel (torch FSDP2) for GRPO runs launched with
`configs/accelerate/fsdp.yaml`: parameters, gradients and optimizer state are sharded across
processes instead of replicated (see distributed.py for how the work is split).

How a GRPO iteration runs sharded:
- the model is wrapped once, at the root (`fully_shard`), after the sampling copy and the
  reference are built from the plain model and after resumed weights are loaded; the root
  keeps its weights gathered between a forward and its backward, so the several forwards of a
  training slot (length buckets, shared prompts) cost one all-gather;
- rollouts, old/reference log-probs and evaluations run inside `full_weights`: the weights are
  gathered once and every forward in there is free of collectives, so processes may generate
  different lengths or fail independently;
- training runs in lockstep: every process runs exactly one backward per minibatch slot (a
  zero backward for a slot it has nothing for, or whose loss was not finite), and gradients
  are reduce-scattered (averaged; summed for dapo) only by the backward that closes an
  accumulation window or ends a pass;
- checkpoints and the final model hold full (unsharded) weights and optimizer state, gathered
  to the main process, in the same files as unsharded runs; open-window gradients are saved
  per process as their local shards.

Why not through accelerate: accelerate 1.15 quietly turns an FSDP launch on CPUs into plain
data parallel (its FSDP switch only exists for GPU process types), and SmartTuner reduces
gradients itself anyway; `fully_shard` runs the same on gloo (CPU) and NCCL (GPU).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from smarttuner.distributed import Dist


def check_config(engine: str, load_in_4bit: bool) -> None:
    """Refuse what a sharded run does not support yet: vLLM rollouts (the engine would need the
    gathered weights after every step) and 4-bit base weights."""
    from smarttuner.distributed import DistributedError

    if engine == "vllm":
        raise DistributedError("FSDP runs cannot use the vLLM rollout engine yet: use ddp.yaml")
    if load_in_4bit:
        raise DistributedError("FSDP runs cannot load the model in 4 bits: use ddp.yaml")


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def shard(model: torch.nn.Module, dist: Dist, sum_gradients: bool) -> torch.nn.Module:
    """Wrap `model` (in place) at its root over all processes. `sum_gradients`: reduce by sum
    (dapo normalises by the global token count itself), else average."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(dist.device.type, (dist.world_size,))
    fully_shard(model, mesh=mesh, reshard_after_forward=False)
    if sum_gradients:
        model.set_gradient_divide_factor(1.0)
        model.set_force_sum_reduction_for_comms(True)
    return model


@contextlib.contextmanager
def full_weights(model: torch.nn.Module) -> Iterator[None]:
    """Gather the weights once (collective) and keep them gathered: forwards inside need no
    collectives. Releasing them is local, so an error inside cannot hang the other processes."""
    if not is_sharded(model):
        yield
        return
    model.unshard()
    try:
        yield
    finally:
        model.reshard()


def set_gradient_sync(model: torch.nn.Module, sync: bool) -> None:
    """Whether the next backward reduce-scatters the gradients (else they accumulate locally)."""
    if is_sharded(model):
        model.set_requires_gradient_sync(sync)


def zero_backward(model: torch.nn.Module, pad_id: int) -> None:
    """A backward that adds exactly zero to every gradient: keeps this process in step with
    the others' collectives when it has nothing to train on in a slot."""
    ids = torch.full((1, 1), pad_id, dtype=torch.long, device=_device(model))
    model(input_ids=ids).logits.float().sum().mul(0.0).backward()


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This process's shard of a sharded tensor (a plain tensor is returned as is)."""
    from torch.distributed.tensor import DTensor

    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def like_param(param: torch.nn.Parameter, shard_: torch.Tensor) -> torch.Tensor:
    """A saved local shard (or plain tensor) turned back into a gradient for `param`."""
    from torch.distributed.tensor import DTensor

    shard_ = shard_.to(param.device, param.dtype)
    if isinstance(param, DTensor):
        return DTensor.from_local(shard_, param.device_mesh, param.placements)
    return shard_


def full_norm(norm: torch.Tensor) -> float:
    """`clip_grad_norm_` over sharded gradients returns a sharded scalar."""
    from torch.distributed.tensor import DTensor

    return float(norm.full_tensor() if isinstance(norm, DTensor) else norm)


def _options(**extra: Any):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **extra)


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every weight, unsharded, on the main process (`{}` elsewhere), tied copies (SmolLM2's
    lm_head = embed_tokens) listed once, as `save_pretrained` writes them. Collective."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    sd = get_model_state_dict(model, options=_options(cpu_offload=True))
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    tied = {name for group in names.values() for name in group[1:]}
    return {k: v for k, v in sd.items() if k not in tied}


def _trainable_names(model: torch.nn.Module) -> list[str]:
    """Trainable parameter names in `build_optimizer`'s order: index i of the optimizer."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's full state on the main process, keyed by parameter index exactly like
    `optimizer.state_dict()` of an unsharded run (so checkpoints have one format). Collective."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    sd = get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))
    if not sd:
        return sd
    index = {name: i for i, name in enumerate(_trainable_names(model))}
    return {
        "state": {index[name]: value for name, value in sd["state"].items()},
        "param_groups": [
            {**g, "params": [index[name] for name in g["params"]]} for g in sd["param_groups"]
        ],
    }


def load_full_optimizer_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, sd: dict
) -> None:
    """The inverse of `full_optimizer_state` (every process passes the whole state)."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    names = _trainable_names(model)
    named = {
        "state": {names[int(i)]: value for i, value in sd["state"].items()},
        "param_groups": [
            {**g, "params": [names[int(i)] for i in g["params"]]} for g in sd["param_groups"]
        ],
    }
    set_optimizer_state_dict(model, optimizer, named, options=_options())
