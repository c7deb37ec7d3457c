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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, get_scheduler
from transformers import PreTrainedTokenizerBase as Tokenizer

from smarttuner.config import GRPOConfig, dump_config
from smarttuner.evaluate import EvalResult, evaluate_task
from smarttuner.formatting import ANSWER_CLOSE
from smarttuner.grpo.buffer import ExperienceBuffer
from smarttuner.grpo.experience import CollectSettings, collect_experience
from smarttuner.grpo.optimize import LossSettings, OptimState, train_pass
from smarttuner.models import (
    attach_reference_adapter,
    autocast_context,
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


@dataclass
class GRPORun:
    """Everything one GRPO run holds between iterations (the unit a checkpoint will save)."""

    cfg: GRPOConfig
    out: Path
    data: RunData
    model: PreTrainedModel
    tokenizer: Tokenizer
    ref_model: PreTrainedModel | None
    rewards: list[NamedReward]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    buffer: ExperienceBuffer
    generator: torch.Generator
    sampling: SamplingParams
    collect: CollectSettings
    loss: LossSettings
    tracker: Tracker
    state: OptimState = field(default_factory=OptimState)
    cursor: int = 0
    on_step: StepCallback | None = None

    def report(self, step: int, record: dict[str, Any]) -> None:
        self.tracker.log(record)
        if self.on_step:
            self.on_step(step, record)

    def evaluate(self, step: int, keep: int = 0) -> EvalResult:
        with self.autocast():
            result = run_eval(self.model, self.tokenizer, self.data, self.cfg, keep)
        self.report(step, {"phase": "eval", "step": step, "split": "eval", **result.metrics()})
        return result

    def autocast(self):
        return autocast_context(self.cfg.model.autocast, self.model.device)

    def next_prompts(self) -> list[Example]:
        n, pool = self.cfg.grpo.exploration_batchsize, self.data.train
        batch = [pool[(self.cursor + i) % len(pool)] for i in range(n)]
        self.cursor = (self.cursor + n) % len(pool)
        return batch

    def iteration(self, iteration: int, start: float) -> dict[str, Any]:
        """Collect experience, train on the buffer, log; returns the step record."""
        t_step = time.perf_counter()
        examples = self.next_prompts()
        questions = [e.question for e in examples]
        system = self.data.task.system_prompt
        texts = [render_prompt(self.tokenizer, q, system) for q in questions]
        prompt_ids = encode_prompts(
            self.tokenizer,
            questions,
            system,
            self.sampling.max_new_tokens,
            context_length(self.model),
        )
        with self.autocast():
            collected = collect_experience(
                self.model,
                self.ref_model,
                self.tokenizer,
                get_engine(self.cfg.generation.engine),
                self.data.task,
                self.rewards,
                examples,
                prompt_ids,
                texts,
                self.sampling,
                self.collect,
                iteration,
                self.generator,
            )
            self.buffer.add(collected.experiences)
            t0 = time.perf_counter()
            train_stats = self.train_on_buffer(len(collected.experiences))
        record = {
            "phase": "grpo",
            "step": iteration,
            **train_stats,
            **collected.stats,
            "time/train": time.perf_counter() - t0,
            "lr": self.scheduler.get_last_lr()[0],
            "step_seconds": time.perf_counter() - t_step,
            "elapsed_seconds": time.perf_counter() - start,
            "rewards": collected.rewards,
            "advantages": collected.advantages,
        }
        self.report(iteration, record)
        every = self.cfg.log_completions_every
        if every and iteration % every == 0:
            self.tracker.log_completions(iteration, collected.samples)
        return record

    def train_on_buffer(self, fresh: int) -> dict[str, float]:
        if not len(self.buffer) or not fresh:
            return {}
        size = self.cfg.optim.batch_size
        num_batches = self.cfg.grpo.mu * math.ceil(fresh / size)
        batches = self.buffer.minibatches(num_batches, size, self.generator)
        return train_pass(
            self.model,
            self.optimizer,
            self.scheduler,
            batches,
            self.loss,
            self.state,
            self.tokenizer.pad_token_id,
        )


def setup_run(
    cfg: GRPOConfig,
    on_step: StepCallback | None = None,
    model: PreTrainedModel | None = None,
    tokenizer: Tokenizer | None = None,
) -> GRPORun:
    """Validate, load and build everything; fails on bad input before any expensive work."""
    out = prepare_output_dir(Path(cfg.output_dir), cfg.overwrite)
    data = prepare_data(cfg)
    rewards = build_rewards(cfg, data.task)
    get_engine(cfg.generation.engine)
    seed_everything(cfg.seed)
    if model is None or tokenizer is None:
        model, tokenizer = load_model(cfg.model, cfg.lora)
        start_dir = resolve_model_path(cfg.model.name)
        if cfg.grpo.beta > 0 and is_peft(model) and is_adapter_dir(start_dir):
            attach_reference_adapter(model, start_dir)
    questions = [e.question for e in data.eval[:1] + data.train[:1]]
    encode_prompts(
        tokenizer,
        questions,
        data.task.system_prompt,
        cfg.generation.max_new_tokens,
        context_length(model),
    )
    reset_run_files(out, [METRICS_FILE, COMPLETIONS_FILE])
    dump_config(cfg, out / "config.yaml")
    g, o = cfg.grpo, cfg.optim
    per_iter = g.exploration_batchsize * g.num_generations
    per_pass = math.ceil(per_iter / o.batch_size)
    optimizer, scheduler = build_optimizer(
        model, cfg, cfg.num_iterations * g.mu * per_pass // o.gradient_accumulation_steps
    )
    reuse = policy_is_sampler_during_training(
        g.mu,
        g.buffer_size,
        per_iter,
        per_pass,
        o.gradient_accumulation_steps,
        g.skip_zero_std_groups,
    )
    gen = cfg.generation
    return GRPORun(
        cfg=cfg,
        out=out,
        data=data,
        model=model,
        tokenizer=tokenizer,
        ref_model=reference_model(model, cfg),
        rewards=rewards,
        optimizer=optimizer,
        scheduler=scheduler,
        buffer=ExperienceBuffer(g.buffer_size),
        generator=torch.Generator().manual_seed(cfg.seed),
        sampling=SamplingParams(
            gen.max_new_tokens,
            gen.temperature,
            gen.top_p,
            (ANSWER_CLOSE,) if gen.stop_at_answer else (),
        ),
        collect=CollectSettings(
            g.num_generations,
            g.scale_rewards,
            g.advantage_epsilon,
            g.beta,
            g.skip_zero_std_groups,
            o.batch_size,
            compute_old_logprobs=not reuse,
        ),
        loss=LossSettings(
            g.epsilon,
            g.epsilon_high,
            g.beta,
            g.loss_type,
            gen.max_new_tokens,
            gen.temperature or 1.0,
            o.max_grad_norm,
            o.gradient_accumulation_steps,
        ),
        tracker=Tracker(out),
        on_step=on_step,
    )


def train_grpo(
    cfg: GRPOConfig,
    on_step: StepCallback | None = None,
    model: PreTrainedModel | None = None,
    tokenizer: Tokenizer | None = None,
) -> dict[str, Any]:
    """Run GRPO as `cfg` says; returns the results dict also written to results.json."""
    run = setup_run(cfg, on_step, model, tokenizer)
    data = run.data
    results: dict[str, Any] = {
        "model": cfg.model.name,
        "task": cfg.task.name,
        "train_size": len(data.train),
        "eval_size": len(data.eval),
        "eval_overlap_dropped": data.overlap_dropped,
    }
    if cfg.eval.baseline:
        results["baseline"] = run.evaluate(0).metrics()
    start = time.perf_counter()
    for iteration in range(1, cfg.num_iterations + 1):
        run.iteration(iteration, start)
        if cfg.eval.every and iteration % cfg.eval.every == 0 and iteration < cfg.num_iterations:
            run.evaluate(iteration)
    train_seconds = time.perf_counter() - start
    final = run.evaluate(cfg.num_iterations, keep=20)
    model_dir = save_model(run.model, run.tokenizer, run.out / "model")
    results.update(
        final=final.metrics(),
        eval_samples=final.samples,
        model_dir=str(model_dir),
        iterations=cfg.num_iterations,
        optimizer_steps=run.state.optimizer_steps,
        train_seconds=train_seconds,
    )
    write_json(run.out / "results.json", results)
    return results
