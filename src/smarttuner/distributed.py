"""Several processes (`accelerate launch`, `torchrun`): who samples what, and what is shared.

How a GRPO run splits (the recipe means the same on any number of processes W):
- every process holds the whole model; they start identical (same seed) and stay identical,
  because every optimizer step applies the same all-reduced gradient;
- `exploration_batchsize` is global: each process takes a contiguous block of B / W prompts
  (groups stay whole), samples them, and computes rewards and group advantages itself — no
  rewards cross processes, except with `scale_rewards: batch`, where the batch std needs them
  all (gathered);
- `optim.batch_size` is global too: each process trains on minibatches of batch_size / W of
  its own completions, and before each optimizer step the trainable gradients are averaged
  across processes (summed for `dapo`, whose token normaliser is then the global window
  token count). That is one all-reduce per optimizer step, not per backward;
- only the main process writes logs, checkpoints and the final model; per-process state
  (experience buffer, RNG) is gathered to it as bytes. Nothing crosses processes as pickle.

Why not DDP (`accelerator.prepare(model)`): DDP all-reduces inside every backward, so every
process must run the same number of backwards — a minibatch skipped for a non-finite loss on
one process, or a process without experience in a slot, would hang the job. Averaging the
gradients once per step keeps each process free to skip, costs one all-reduce per step, and
needs no wrapper around the PEFT model (generation and the reference forward use it as is).

FSDP (`configs/accelerate/fsdp.yaml`, fsdp_version 2) shards the model instead: see fsdp.py
for how it keeps processes in step. DeepSpeed is refused with one line: its engine owns
backward, the optimizer step and checkpointing (as pickles), and accelerate turns it off on
CPUs, so it could not be run or tested here (docs/scaling.md).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from smarttuner.grpo.experience import Collected, pooled_stats
from smarttuner.rollout import Engine, RolloutBatch

_BUCKET = 1 << 24  # elements per all-reduce of flattened gradients
_SUMMED = frozenset({"experiences_kept", "tokens_per_second", "trained_tokens"})
# token means: weighted by each process's trained tokens (processes' completions differ in length)
_TOKEN_WEIGHTED = frozenset({"kl", "clip_fraction"})


class DistributedError(RuntimeError):
    """A launch SmartTuner cannot run (one line, says what is supported)."""


class PeerFailure(RuntimeError):
    """Another process of a multi-process run failed (its own message says why)."""


@dataclass
class Dist:
    """This process's place in the job; with one process every collective is a no-op."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    fsdp: bool = False  # the model is sharded (fsdp.py); FSDP reduces the gradients itself

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over processes (returns a new tensor on the tensor's own device)."""
        if not self.active:
            return tensor
        import torch.distributed as td

        buf = tensor.to(self.device, copy=True)
        td.all_reduce(buf)
        return buf.to(tensor.device)

    def any(self, flag: bool) -> bool:
        return bool(self.all_reduce(torch.tensor([float(flag)])).item() > 0)

    def all(self, flag: bool) -> bool:
        return not self.any(not flag)

    def sum(self, value: float) -> float:
        return float(self.all_reduce(torch.tensor([value], dtype=torch.float64)).item())

    def gather_bytes(self, data: bytes) -> list[bytes]:
        """Every process's `data`, in rank order, on every process."""
        if not self.active:
            return [data]
        import torch.distributed as td

        n = torch.tensor([len(data)], dtype=torch.long, device=self.device)
        sizes = [torch.zeros_like(n) for _ in range(self.world_size)]
        td.all_gather(sizes, n)
        longest = max(int(s) for s in sizes)
        buf = torch.zeros(max(longest, 1), dtype=torch.uint8)
        if data:
            buf[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        buf = buf.to(self.device)
        parts = [torch.empty_like(buf) for _ in range(self.world_size)]
        td.all_gather(parts, buf)
        return [bytes(p[: int(s)].cpu().numpy()) for p, s in zip(parts, sizes, strict=True)]

    def gather_json(self, obj: Any) -> list[Any]:
        return [json.loads(b) for b in self.gather_bytes(json.dumps(obj).encode())]

    def barrier(self) -> None:
        if self.active:
            self.any(False)

    def sync_gradients(self, params: list[torch.nn.Parameter], state: Any, average: bool) -> None:
        """All-reduce the trainable gradients (mean, or sum when `average` is False) and the
        window's token and contribution counts in `state` (an OptimState). Under FSDP the
        gradients were already reduce-scattered by the backward: only the counts."""
        if not self.active:
            return
        if not self.fsdp:
            self._all_reduce_gradients(params, average)
        counts = self.all_reduce(
            torch.tensor([state.window_tokens, state.contributed], dtype=torch.float64)
        )
        state.window_tokens = float(counts[0])
        state.contributed = int(counts[1])

    def _all_reduce_gradients(self, params: list[torch.nn.Parameter], average: bool) -> None:
        import torch.distributed as td

        grads = []
        for p in params:
            if p.grad is None:  # nothing reached this parameter here; it did elsewhere
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        for bucket in _buckets(grads):
            flat = torch.cat([g.reshape(-1) for g in bucket]).to(self.device)
            td.all_reduce(flat)
            if average:
                flat /= self.world_size
            offset = 0
            for g in bucket:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    def shard_range(self, n: int) -> slice:
        """This process's contiguous block of `n` items (n divisible by the world size)."""
        size = n // self.world_size
        return slice(self.rank * size, (self.rank + 1) * size)


def _buckets(grads: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    out: list[list[torch.Tensor]] = []
    size = 0
    for g in grads:
        if not out or size + g.numel() > _BUCKET or out[-1][0].dtype != g.dtype:
            out.append([])
            size = 0
        out[-1].append(g)
        size += g.numel()
    return out


def init_distributed() -> Dist:
    """The job this process belongs to: one process unless launched with several
    (`accelerate launch`, `torchrun`: WORLD_SIZE > 1), then the process group is set up by
    accelerate (gloo on CPUs, NCCL on GPUs)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    if _env_true("ACCELERATE_USE_DEEPSPEED"):
        raise DistributedError(
            "DeepSpeed launches are not supported: use configs/accelerate/fsdp.yaml for sharded "
            "training or ddp.yaml for data parallel (see docs/scaling.md)"
        )
    fsdp = _env_true("ACCELERATE_USE_FSDP")
    if fsdp:
        check_fsdp_launch()
    from accelerate import PartialState

    cpu = _env_true("ACCELERATE_USE_CPU")
    state = PartialState(cpu=cpu or not torch.cuda.is_available())
    return Dist(state.process_index, state.num_processes, state.device, fsdp=fsdp)


def _env_true(var: str) -> bool:
    return os.environ.get(var, "").lower() in ("1", "true")


def check_fsdp_launch() -> None:
    """Refuse FSDP settings SmartTuner does not implement, and stop transformers from leaving
    the weights of processes other than the first unloaded (accelerate's
    `fsdp_cpu_ram_efficient_loading` expects accelerate to broadcast them; SmartTuner loads the
    model in every process before sharding it)."""
    version = os.environ.get("FSDP_VERSION", "1")
    if version != "2":
        raise DistributedError(
            f"FSDP version {version} is not supported: set fsdp_version: 2 in the accelerate "
            "config (configs/accelerate/fsdp.yaml)"
        )
    if _env_true("FSDP_OFFLOAD_PARAMS"):
        raise DistributedError(
            "FSDP parameter offloading is not supported: set fsdp_offload_params: false"
        )
    os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = "false"


def check_divisible(world_size: int, exploration: int, batch_size: int, shards: int) -> int:
    """The number of sampling shards, after checking that the global sizes split evenly."""
    if world_size == 1 and not shards:
        return 1
    sizes = ((exploration, "grpo.exploration_batchsize"), (batch_size, "optim.batch_size"))
    for value, name in sizes:
        if value % world_size:
            raise DistributedError(
                f"{name}={value} must be divisible by the number of processes ({world_size}): "
                "it is split evenly across them"
            )
    shards = shards or world_size
    if shards % world_size:
        raise DistributedError(
            f"sampling_shards={shards} must be a multiple of the number of processes ({world_size})"
        )
    return shards


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (run seed, purpose, iteration, shard …)."""
    entropy = [int(p) % (1 << 32) for p in parts]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


def sharded_engine(engine: Engine, seeds: list[int]) -> Engine:
    """`engine` called once per shard of the prompts, each with a generator seeded by its own
    seed, so a shard's samples do not depend on which process draws it or what else it draws."""

    def run(model, tokenizer, prompts, num_samples, params, generator=None) -> RolloutBatch:
        size = len(prompts) // len(seeds)
        parts = [
            engine(
                model,
                tokenizer,
                prompts[i * size : (i + 1) * size],
                num_samples,
                params,
                torch.Generator().manual_seed(seed),
            )
            for i, seed in enumerate(seeds)
        ]
        return concat_rollouts(parts, tokenizer.pad_token_id)

    return run


def concat_rollouts(parts: list[RolloutBatch], pad_id: int) -> RolloutBatch:
    """One batch from several, re-padded (prompts on the left, completions on the right)."""
    if len(parts) == 1:
        return parts[0]
    p_width = max(b.prompt_ids.shape[1] for b in parts)
    c_width = max(b.completion_ids.shape[1] for b in parts)

    def pad(t: torch.Tensor, width: int, value: int, left: bool) -> torch.Tensor:
        extra = width - t.shape[1]
        return F.pad(t, (extra, 0) if left else (0, extra), value=value)

    return RolloutBatch(
        prompt_ids=torch.cat([pad(b.prompt_ids, p_width, pad_id, True) for b in parts]),
        prompt_mask=torch.cat([pad(b.prompt_mask, p_width, 0, True) for b in parts]),
        completion_ids=torch.cat([pad(b.completion_ids, c_width, pad_id, False) for b in parts]),
        completion_mask=torch.cat([pad(b.completion_mask, c_width, 0, False) for b in parts]),
        truncated=torch.cat([b.truncated for b in parts]),
        texts=[t for b in parts for t in b.texts],
    )


def merge_stats(per_process: list[dict[str, float]]) -> dict[str, float]:
    """One iteration record from every process's: means over equal shares are averaged, token
    means weighted by each process's `trained_tokens`, counts and throughput summed, times are
    the slowest process's. (Statistics that are not means — reward and advantage std — are
    recomputed from the gathered values by the caller.)"""
    out: dict[str, float] = {}
    weights = [s.get("trained_tokens", 0.0) for s in per_process]
    for key in per_process[0]:
        values = [s.get(key) for s in per_process]
        numbers = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
        if not numbers:
            out[key] = float("nan")
        elif key in _TOKEN_WEIGHTED and sum(weights) > 0:
            pairs = [(v, w) for v, w in zip(values, weights, strict=True) if w > 0]
            out[key] = sum(v * w for v, w in pairs) / sum(w for _, w in pairs)
        elif key in _SUMMED:
            out[key] = sum(numbers)
        elif key.startswith("time/"):
            out[key] = max(numbers)
        else:
            out[key] = sum(numbers) / len(numbers)
    return out


def scale_by_batch_std(dist: Dist, c: Collected, epsilon: float) -> Collected:
    """scale_rewards='batch' over several processes: this process's centred advantages divided
    by the std of every process's rewards, in float32 exactly as `group_advantages(...,
    scale="batch")` does on one process."""
    everyone = [r for part in dist.gather_json(c.rewards) for r in part]
    divisor = torch.tensor(everyone, dtype=torch.float32).std() + epsilon
    advantages = (torch.tensor(c.advantages, dtype=torch.float32) / divisor).tolist()
    experiences = [
        replace(e, advantage=float(torch.tensor(e.advantage, dtype=torch.float32) / divisor))
        for e in c.experiences
    ]
    samples = [{**s, "advantage": a} for s, a in zip(c.samples, advantages, strict=True)]
    return replace(c, experiences=experiences, advantages=advantages, samples=samples)


def merge_iteration(dist: Dist, c: Collected, train_stats: dict[str, float]):
    """(stats, rewards, advantages, samples) of a whole iteration, gathered from every process:
    means of equal shares averaged (`merge_stats`), reward, advantage and component statistics
    recomputed from everyone's values, samples and per-completion lists concatenated."""
    stats = {**train_stats, **c.stats}
    if not dist.active:
        return stats, c.rewards, c.advantages, c.samples
    parts = dist.gather_json(
        {"stats": stats, "rewards": c.rewards, "adv": c.advantages, "samples": c.samples}
    )
    rewards = [r for p in parts for r in p["rewards"]]
    advantages = [a for p in parts for a in p["adv"]]
    samples = [s for p in parts for s in p["samples"]]
    merged = merge_stats([p["stats"] for p in parts])
    merged.update(pooled_stats(rewards, advantages, samples))
    return merged, rewards, advantages, samples


def combine_means(dist: Dist, means: dict[str, float], n: int) -> dict[str, float]:
    """Means over each process's n items -> means over all items (weighted by n)."""
    if not dist.active:
        return means
    keys = sorted(means)
    totals = dist.all_reduce(
        torch.tensor([means[k] * n for k in keys] + [float(n)], dtype=torch.float64)
    )
    count = max(float(totals[-1]), 1.0)
    return {k: float(totals[i]) / count for i, k in enumerate(keys)}
