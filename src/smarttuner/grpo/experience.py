"""Experience collection: prompts -> G completions each -> rewards -> group advantages ->
old and reference log-probs -> `Experience` rows for the buffer, plus the step's statistics."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from smarttuner.formatting import format_ok
from smarttuner.grpo.advantages import group_advantages, zero_std_groups
from smarttuner.grpo.buffer import Experience
from smarttuner.grpo.credit import blame_stats, credit_starts
from smarttuner.grpo.logprobs import bucketed_logprobs
from smarttuner.models import reference_mode
from smarttuner.rewards import NamedReward, component_stats, compute_rewards
from smarttuner.rollout import Engine, RolloutBatch, SamplingParams
from smarttuner.tasks.base import Example, Task


@dataclass(frozen=True)
class CollectSettings:
    num_generations: int
    scale_rewards: str
    advantage_epsilon: float
    beta: float
    skip_zero_std_groups: bool
    logprob_batch_size: int
    compute_old_logprobs: bool = True  # False when training is exactly on-policy (see trainer)
    blame: str = "sequence"  # which tokens a negative advantage applies to (grpo/credit.py)


@dataclass
class Collected:
    experiences: list[Experience]
    stats: dict[str, float]
    rewards: list[float]
    advantages: list[float]
    samples: list[dict[str, Any]] = field(default_factory=list)


def reference_context(model: PreTrainedModel, ref_model: PreTrainedModel | None):
    """(model to use, context): a separate frozen reference (full fine-tuning), or the PEFT
    model switched to its reference (frozen starting adapter, or adapter disabled)."""
    if ref_model is not None:
        return ref_model, contextlib.nullcontext()
    return model, reference_mode(model)


@torch.no_grad()
def batched_logprobs(
    model: PreTrainedModel,
    batch: RolloutBatch,
    temperature: float,
    chunk: int,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:  # [N, C]
    """Log-probs of the completions in `rows` (default all; other rows stay 0), at most
    `chunk` rows per forward (length buckets)."""
    out = torch.zeros(batch.completion_ids.shape, dtype=torch.float32)
    rows = torch.arange(out.shape[0]) if rows is None else rows
    if len(rows):
        out[rows] = bucketed_logprobs(
            model,
            batch.prompt_ids[rows],
            batch.prompt_mask[rows],
            batch.completion_ids[rows],
            batch.completion_mask[rows],
            temperature,
            max_rows=chunk,
        ).cpu()
    return out


def collect_experience(
    model: PreTrainedModel,
    ref_model: PreTrainedModel | None,
    tokenizer: Tokenizer,
    engine: Engine,
    task: Task,
    rewards: list[NamedReward],
    examples: list[Example],
    prompt_ids: list[list[int]],
    prompt_texts: list[str],
    sampling: SamplingParams,
    settings: CollectSettings,
    iteration: int,
    generator: torch.Generator,
    room: int | None = None,
) -> Collected:
    """`room`: in a refill round, how many more groups the iteration wants (see
    `groups_to_train`); None keeps every group the settings keep."""
    g = settings.num_generations
    model.eval()
    t0 = time.perf_counter()
    batch = engine(model, tokenizer, prompt_ids, g, sampling, generator)
    t_gen = time.perf_counter() - t0

    t0 = time.perf_counter()
    repeated = [ex for ex in examples for _ in range(g)]
    result = compute_rewards(
        rewards,
        prompts=[p for p in prompt_texts for _ in range(g)],
        completions=batch.texts,
        example=repeated,
        answer=[ex.answer for ex in repeated],
        question=[ex.question for ex in repeated],
        metadata=[ex.metadata for ex in repeated],
    )
    advantages = group_advantages(
        result.total, g, settings.scale_rewards, settings.advantage_epsilon
    )  # [N]
    flat_groups = zero_std_groups(result.total, g)  # [B]
    t_reward = time.perf_counter() - t0

    keep_group = groups_to_train(flat_groups, settings.skip_zero_std_groups, room)
    kept = (keep_group.repeat_interleave(g) & (batch.lengths > 0)).nonzero().squeeze(1)  # [K]
    t0 = time.perf_counter()  # log-probs only for the completions that become experience
    temperature, chunk = sampling.temperature or 1.0, settings.logprob_batch_size
    old = None
    if settings.compute_old_logprobs:
        old = batched_logprobs(model, batch, temperature, chunk, kept)
    ref = None
    if settings.beta > 0:
        ref_net, ctx = reference_context(model, ref_model)
        with ctx:
            ref = batched_logprobs(ref_net, batch, temperature, chunk, kept)
    t_logp = time.perf_counter() - t0

    lengths, flat_advantages = batch.lengths.tolist(), advantages.tolist()
    credit = credit_starts(
        settings.blame, batch.texts, batch.completion_ids, lengths, flat_advantages, tokenizer
    )
    experiences = [
        Experience(
            prompt_ids=batch.prompt_ids[i][batch.prompt_mask[i].bool()],
            completion_ids=batch.completion_ids[i, : lengths[i]],
            old_logprobs=None if old is None else old[i, : lengths[i]],
            ref_logprobs=None if ref is None else ref[i, : lengths[i]],
            advantage=float(advantages[i]),
            iteration=iteration,
            group=i // g,
            credit_from=credit[i],
        )
        for i in kept.tolist()
    ]
    correct = [task.is_correct(t, ex) for t, ex in zip(batch.texts, repeated, strict=True)]
    n_tokens = sum(lengths)
    stats = {
        "reward_mean": result.total.mean().item(),
        "reward_std": result.total.std().item(),
        **component_stats(result.components),
        "accuracy": sum(correct) / len(correct),
        "format_rate": sum(format_ok(t) for t in batch.texts) / len(batch.texts),
        "zero_std_fraction": flat_groups.float().mean().item(),
        "completion_length": n_tokens / len(lengths),
        "truncated_fraction": batch.truncated.float().mean().item(),
        "advantage_mean": advantages.mean().item(),
        "advantage_std": advantages.std().item(),
        "tokens_per_second": n_tokens / max(t_gen, 1e-9),
        "time/generate": t_gen,
        "time/rewards": t_reward,
        "time/logprobs": t_logp,
        "experiences_kept": len(experiences),
        **(blame_stats(credit, lengths, flat_advantages) if settings.blame != "sequence" else {}),
    }
    samples = [
        {
            "prompt": prompt_texts[i // g],
            "completion": batch.texts[i],
            "gold": repeated[i].answer,
            "reward": float(result.total[i]),
            "advantage": float(advantages[i]),
            "credit_from": credit[i],
            "components": {k: v[i] for k, v in result.components.items()},
        }
        for i in range(len(batch.texts))
    ]
    return Collected(
        experiences=experiences,
        stats=stats,
        rewards=result.total.tolist(),
        advantages=advantages.tolist(),
        samples=samples,
    )


def pooled_stats(
    rewards: list[float], advantages: list[float], samples: list[dict[str, Any]]
) -> dict[str, float]:
    """Reward, advantage and per-component statistics of pooled completions, recomputed from
    their values (a std is not the mean of the parts' stds)."""
    r = torch.tensor(rewards, dtype=torch.float32)
    a = torch.tensor(advantages, dtype=torch.float32)
    names = list(samples[0]["components"]) if samples else []
    return {
        "reward_mean": r.mean().item(),
        "reward_std": r.std().item(),
        "advantage_mean": a.mean().item(),
        "advantage_std": a.std().item(),
        **component_stats({n: [s["components"][n] for s in samples] for n in names}),
    }


def groups_to_train(flat: torch.Tensor, skip_flat: bool, room: int | None) -> torch.Tensor:
    """[B] bool: the groups that become experience — all, or (skip_flat) those with unequal
    rewards; with `room`, only the first `room` of those, so that no log-prob forward is spent
    on a group a refilled iteration does not need (DAPO keeps the first ones too)."""
    keep = ~flat if skip_flat else torch.ones_like(flat)
    if room is not None:
        keep &= keep.cumsum(0) <= room
    return keep


def kept_groups(collected: Collected) -> int:
    """How many groups (prompts) of a round became experience."""
    return len({e.group for e in collected.experiences})


def merge_rounds(rounds: list[Collected], group_size: int) -> Collected:
    """One iteration's `Collected` from several sampling rounds (DAPO dynamic sampling): the
    kept groups of the rounds in order, renumbered so that a group id is unique in the
    iteration; every sampled completion stays in the logged rewards, advantages and samples,
    and the statistics describe all of them (times summed)."""
    experiences: list[Experience] = []
    offset = 0
    for part in rounds:
        experiences += [replace(e, group=offset + e.group) for e in part.experiences]
        offset += len(part.rewards) // group_size
    rewards = [r for part in rounds for r in part.rewards]
    advantages = [a for part in rounds for a in part.advantages]
    samples = [s for part in rounds for s in part.samples]
    stats = {  # every round samples as many completions: their means average evenly
        k: sum(p.stats[k] for p in rounds) / len(rounds) for k in rounds[0].stats
    }
    for key in (k for k in stats if k.startswith("time/")):
        stats[key] = sum(p.stats[key] for p in rounds)
    tokens = sum(p.stats["completion_length"] * len(p.rewards) for p in rounds)
    stats.update(
        **pooled_stats(rewards, advantages, samples),
        tokens_per_second=tokens / max(stats["time/generate"], 1e-9),
        experiences_kept=len(experiences),
        sampling_rounds=len(rounds),
    )
    return Collected(experiences, stats, rewards, advantages, samples)
