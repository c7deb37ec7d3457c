"""The GRPO run: set-up, the iteration loop (collect experience → train on the buffer → log →
evaluate), and the final save. Algorithm pieces live in advantages.py, loss.py, buffer.py,
experience.py and optimize.py; this file only wires them together.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, get_scheduler
from transformers import PreTrainedTokenizerBase as Tokenizer

from smarttuner.config import GRPOConfig, dump_config
from smarttuner.evaluate import evaluate_task
from smarttuner.formatting import ANSWER_CLOSE
from smarttuner.grpo.buffer import ExperienceBuffer
from smarttuner.grpo.experience import CollectSettings, collect_experience
from smarttuner.grpo.optimize import LossSettings, OptimState, train_pass
from smarttuner.models import (
    attach_reference_adapter,
    is_adapter_dir,
    is_peft,
    load_model,
    resolve_model_path,
    save_model,
)
from smarttuner.outputs import prepare_output_dir, reset_run_files, write_json
from smarttuner.prompts import context_length, encode_prompts, render_prompt
from smarttuner.rewards import NamedReward, build_reward
from smarttuner.rollout import SamplingParams, get_engine
from smarttuner.tasks import get_task
from smarttuner.tasks.base import Example, Task
from smarttuner.tasks.splits import check_disjoint, drop_overlap
from smarttuner.tracking import COMPLETIONS_FILE, METRICS_FILE, Tracker

log = logging.getLogger(__name__)

StepCallback = Callable[[int, dict[str, Any]], None]


@dataclass
class RunData:
    task: Task
    train: list[Example]
    eval: list[Example]
    overlap_dropped: int


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_data(cfg: GRPOConfig) -> RunData:
    """The task, its training pool and its held-out eval set, with overlap removed from train."""
    task = get_task(cfg.task.name, **cfg.task.params)
    train = task.examples(cfg.task.dataset_seed, cfg.task.num_train_examples)
    evals = task.examples(cfg.task.eval_seed, cfg.eval.num_examples)
    overlap = check_disjoint(train, evals)
    if overlap:
        log.warning(
            "%d training prompts also appear in the eval set: dropped from training", overlap
        )
        train = drop_overlap(train, evals)
    if not train:
        raise ValueError("no training prompts left after removing the eval overlap")
    return RunData(task, train, evals, overlap)


def build_rewards(cfg: GRPOConfig, task: Task) -> list[NamedReward]:
    return [
        NamedReward(s.name, s.weight, build_reward(s.name, task, s.params)) for s in cfg.rewards
    ]


def build_optimizer(model: PreTrainedModel, cfg: GRPOConfig, total_steps: int):
    params = [p for p in model.parameters() if p.requires_grad]
    o = cfg.optim
    optimizer = torch.optim.AdamW(
        params, lr=o.learning_rate, betas=(o.adam_beta1, o.adam_beta2), weight_decay=o.weight_decay
    )
    scheduler = get_scheduler(
        o.lr_scheduler
        if o.warmup_steps == 0 or o.lr_scheduler != "constant"
        else "constant_with_warmup",
        optimizer,
        num_warmup_steps=o.warmup_steps,
        num_training_steps=max(total_steps, 1),
    )
    return optimizer, scheduler


def policy_is_sampler_during_training(
    mu: int,
    buffer_size: int,
    per_iteration: int,
    minibatches_per_pass: int,
    gradient_accumulation_steps: int,
    skip_zero_std_groups: bool,
) -> bool:
    """True when every minibatch is trained under exactly the weights that sampled it: one pass,
    a buffer holding only this iteration's completions, and no optimizer step inside the pass
    (the accumulation window closes at the pass's end). Then the old log-probs equal the current
    ones and their separate forward pass can be skipped (ratio = 1, as in TRL with μ = 1)."""
    return (
        mu == 1
        and buffer_size == per_iteration
        and not skip_zero_std_groups
        and minibatches_per_pass <= gradient_accumulation_steps
        and gradient_accumulation_steps % minibatches_per_pass == 0
    )


def reference_model(model: PreTrainedModel, cfg: GRPOConfig) -> PreTrainedModel | None:
    """None when no separate copy is needed: beta = 0, or LoRA (reference = adapter disabled)."""
    if cfg.grpo.beta == 0 or is_peft(model):
        return None
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def run_eval(model, tokenizer, data: RunData, cfg: GRPOConfig, keep: int = 0):
    return evaluate_task(
        model,
        tokenizer,
        data.task,
        data.eval,
        max_new_tokens=cfg.eval.max_new_tokens or cfg.generation.max_new_tokens,
        batch_size=cfg.eval.batch_size,
        engine=cfg.generation.engine,
        keep_samples=keep,
    )


def train_grpo(
    cfg: GRPOConfig,
    on_step: StepCallback | None = None,
    model: PreTrainedModel | None = None,
    tokenizer: Tokenizer | None = None,
) -> dict[str, Any]:
    """Run GRPO as `cfg` says; returns the results dict also written to results.json."""
    out = prepare_output_dir(Path(cfg.output_dir), cfg.overwrite)
    data = prepare_data(cfg)
    rewards = build_rewards(cfg, data.task)
    engine = get_engine(cfg.generation.engine)
    seed_everything(cfg.seed)
    if model is None or tokenizer is None:
        model, tokenizer = load_model(cfg.model, cfg.lora)
        start_dir = resolve_model_path(cfg.model.name)
        if cfg.grpo.beta > 0 and is_peft(model) and is_adapter_dir(start_dir):
            attach_reference_adapter(model, start_dir)
    ctx = context_length(model)
    encode_prompts(
        tokenizer,
        [e.question for e in data.eval[:1]],
        data.task.system_prompt,
        cfg.generation.max_new_tokens,
        ctx,
    )  # fail early on impossible prompts
    reset_run_files(out, [METRICS_FILE, COMPLETIONS_FILE])
    dump_config(cfg, out / "config.yaml")
    tracker = Tracker(out)
    ref_model = reference_model(model, cfg)
    g = cfg.grpo
    per_iter = g.exploration_batchsize * g.num_generations
    minibatches_per_pass = math.ceil(per_iter / cfg.optim.batch_size)
    total_steps = cfg.num_iterations * g.mu * minibatches_per_pass
    total_steps //= cfg.optim.gradient_accumulation_steps
    optimizer, scheduler = build_optimizer(model, cfg, total_steps)
    buffer = ExperienceBuffer(g.buffer_size)
    generator = torch.Generator().manual_seed(cfg.seed)
    sampling = SamplingParams(
        cfg.generation.max_new_tokens,
        cfg.generation.temperature,
        cfg.generation.top_p,
        (ANSWER_CLOSE,) if cfg.generation.stop_at_answer else (),
    )
    reuse = policy_is_sampler_during_training(
        g.mu,
        g.buffer_size,
        per_iter,
        minibatches_per_pass,
        cfg.optim.gradient_accumulation_steps,
        g.skip_zero_std_groups,
    )
    collect = CollectSettings(
        g.num_generations,
        g.scale_rewards,
        g.advantage_epsilon,
        g.beta,
        g.skip_zero_std_groups,
        cfg.optim.batch_size,
        compute_old_logprobs=not reuse,
    )
    loss_settings = LossSettings(
        g.epsilon,
        g.epsilon_high,
        g.beta,
        g.loss_type,
        cfg.generation.max_new_tokens,
        cfg.generation.temperature or 1.0,
        cfg.optim.max_grad_norm,
        cfg.optim.gradient_accumulation_steps,
    )
    state = OptimState()

    results: dict[str, Any] = {
        "model": cfg.model.name,
        "task": cfg.task.name,
        "train_size": len(data.train),
        "eval_size": len(data.eval),
        "eval_overlap_dropped": data.overlap_dropped,
    }
    if cfg.eval.baseline:
        baseline = run_eval(model, tokenizer, data, cfg)
        results["baseline"] = baseline.metrics()
        tracker.log({"phase": "eval", "step": 0, "split": "eval", **baseline.metrics()})
        if on_step:
            on_step(0, {"phase": "eval", **baseline.metrics()})

    cursor = 0
    start = time.perf_counter()
    for iteration in range(1, cfg.num_iterations + 1):
        t_step = time.perf_counter()
        batch_examples = [
            data.train[(cursor + i) % len(data.train)] for i in range(g.exploration_batchsize)
        ]
        cursor = (cursor + g.exploration_batchsize) % len(data.train)
        texts = [
            render_prompt(tokenizer, e.question, data.task.system_prompt) for e in batch_examples
        ]
        prompt_ids = encode_prompts(
            tokenizer,
            [e.question for e in batch_examples],
            data.task.system_prompt,
            cfg.generation.max_new_tokens,
            ctx,
        )
        collected = collect_experience(
            model,
            ref_model,
            tokenizer,
            engine,
            data.task,
            rewards,
            batch_examples,
            prompt_ids,
            texts,
            sampling,
            collect,
            iteration,
            generator,
        )
        buffer.add(collected.experiences)
        t0 = time.perf_counter()
        train_stats: dict[str, float] = {}
        if len(buffer):
            num_batches = g.mu * math.ceil(len(collected.experiences) / cfg.optim.batch_size)
            batches = buffer.minibatches(num_batches, cfg.optim.batch_size, generator)
            train_stats = train_pass(
                model, optimizer, scheduler, batches, loss_settings, state, tokenizer.pad_token_id
            )
        record = {
            "phase": "grpo",
            "step": iteration,
            **train_stats,
            **collected.stats,
            "time/train": time.perf_counter() - t0,
            "lr": scheduler.get_last_lr()[0],
            "step_seconds": time.perf_counter() - t_step,
            "elapsed_seconds": time.perf_counter() - start,
            "rewards": collected.rewards,
            "advantages": collected.advantages,
        }
        tracker.log(record)
        if cfg.log_completions_every and iteration % cfg.log_completions_every == 0:
            tracker.log_completions(iteration, collected.samples)
        if on_step:
            on_step(iteration, record)
        if cfg.eval.every and iteration % cfg.eval.every == 0 and iteration < cfg.num_iterations:
            ev = run_eval(model, tokenizer, data, cfg)
            tracker.log({"phase": "eval", "step": iteration, "split": "eval", **ev.metrics()})
            if on_step:
                on_step(iteration, {"phase": "eval", **ev.metrics()})

    final = run_eval(model, tokenizer, data, cfg, keep=20)
    tracker.log({"phase": "eval", "step": cfg.num_iterations, "split": "eval", **final.metrics()})
    if on_step:
        on_step(cfg.num_iterations, {"phase": "eval", **final.metrics()})
    model_dir = save_model(model, tokenizer, out / "model")
    results.update(
        final=final.metrics(),
        eval_samples=final.samples,
        model_dir=str(model_dir),
        iterations=cfg.num_iterations,
        optimizer_steps=state.optimizer_steps,
        train_seconds=time.perf_counter() - start,
    )
    write_json(out / "results.json", results)
    return results
