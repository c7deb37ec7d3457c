"""The GRPO run: set-up, the iteration loop (collect experience → train on the buffer → log →
evaluate → checkpoint), and the final save. Algorithm pieces live in advantages.py, loss.py,
buffer.py, experience.py and optimize.py; what a checkpoint holds in grpo/checkpoint.py (its
files in smarttuner.checkpoint); how the work splits over several processes in
smarttuner.distributed. This file wires them.

Never losing a run: a checkpoint every `checkpoint_every` iterations and when SIGINT/SIGTERM
arrives (the iteration in progress finishes first); a reward or task that raises while
experience is collected leaves the state of the previous iteration untouched, which is saved
before the error is reported; a non-finite streak stops the run without saving, so the last
good checkpoint is the newest. Checkpoints are written only at iteration ends; an accumulation
window still open there is saved with its partial gradients, so a resumed run is the same run.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, get_scheduler
from transformers import PreTrainedTokenizerBase as Tokenizer

from smarttuner import checkpoint as ckpt
from smarttuner import fsdp
from smarttuner.config import GRPOConfig, dump_config
from smarttuner.distributed import (
    Dist,
    PeerFailure,
    check_divisible,
    combine_means,
    derive_seed,
    init_distributed,
    merge_iteration,
    scale_by_batch_std,
    sharded_engine,
)
from smarttuner.evaluate import EvalResult, evaluate_task
from smarttuner.evaluate.paired import greedy_record
from smarttuner.formatting import ANSWER_CLOSE
from smarttuner.grpo.buffer import ExperienceBuffer
from smarttuner.grpo.checkpoint import (
    GuardedTask,
    check_resumable,
    restore_run,
    resume_point,
    save_run,
    saved_on_failure,
)
from smarttuner.grpo.experience import (
    Collected,
    CollectSettings,
    collect_experience,
    kept_groups,
    merge_rounds,
)
from smarttuner.grpo.optimize import LossSettings, OptimState, train_pass
from smarttuner.malloc import release_freed_memory
from smarttuner.memory import memory_record
from smarttuner.models import (
    REFERENCE_ADAPTER,
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
from smarttuner.rollout import SamplingParams, get_engine, on_model, sync_weights
from smarttuner.rollout.policy_copy import PolicyCopy, policy_copy_dtype, sampling_view
from smarttuner.tasks import get_task
from smarttuner.tasks.base import Example, Task
from smarttuner.tasks.curriculum import curriculum_pools
from smarttuner.tasks.splits import balance_by_answer, check_disjoint, drop_overlap
from smarttuner.tracking import COMPLETIONS_FILE, METRICS_FILE, Tracker

log = logging.getLogger(__name__)

StepCallback = Callable[[int, dict[str, Any]], None]
SAMPLING, SHUFFLE = 1, 2  # purposes mixed into derived seeds


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
    """The task, its training pool (curriculum stages first) and its held-out eval set, with
    eval questions removed from every part of the pool."""
    task = get_task(cfg.task.name, **cfg.task.params)
    evals = task.examples(cfg.task.eval_seed, cfg.eval.num_examples)
    stages = curriculum_pools(
        cfg.task.name, cfg.task.params, cfg.grpo.curriculum, cfg.task.dataset_seed
    )
    parts = [*stages, task.examples(cfg.task.dataset_seed, cfg.task.num_train_examples)]
    overlap = sum(check_disjoint(part, evals) for part in parts)
    if overlap:
        log.warning(
            "%d training prompts also appear in the eval set: dropped from training", overlap
        )
        parts = [drop_overlap(part, evals) for part in parts]
    if cfg.task.balance_answers:  # part by part, so the curriculum's order survives
        parts = [balance_by_answer(part) for part in parts]
    if stages:
        log.info("curriculum: %s prompts before the task's %d", [len(p) for p in parts[:-1]],
                 len(parts[-1]))  # fmt: skip
    train = [example for part in parts for example in part]
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


def reference_model(
    model: PreTrainedModel, cfg: GRPOConfig, copy_dtype: torch.dtype | None = None
) -> PreTrainedModel | None:
    """None when no separate copy is needed: beta = 0, or LoRA (reference = adapter disabled
    or the frozen reference adapter). With a sampling-copy dtype (`policy_copy_dtype`), the
    reference is a frozen merged copy in that dtype: no adapter matmuls, no weight casts."""
    if cfg.grpo.beta == 0:
        return None
    if copy_dtype is not None:
        has_ref = REFERENCE_ADAPTER in getattr(model, "peft_config", {})
        return PolicyCopy(model, copy_dtype, REFERENCE_ADAPTER if has_ref else None).model
    if is_peft(model):
        return None
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def run_eval(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    data: RunData,
    cfg: GRPOConfig,
    keep: int = 0,
    examples: list[Example] | None = None,
) -> EvalResult:
    return evaluate_task(
        model,
        tokenizer,
        data.task,
        data.eval if examples is None else examples,
        max_new_tokens=cfg.eval.max_new_tokens or cfg.generation.max_new_tokens,
        batch_size=cfg.eval.batch_size,
        engine=cfg.generation.engine,
        keep_samples=keep,
    )


def evaluate_model(cfg: GRPOConfig, data: RunData) -> EvalResult:
    """Greedy eval of `cfg.model` (a model or an adapter folder) the way a GRPO run's eval at
    step 0 does it: same sampler (the merged copy when `generation.policy_copy` applies), same
    autocast, same settings."""
    model, tokenizer = load_model(cfg.model, lora=None, trainable=False)
    with sampling_view(model, cfg.model.autocast, policy_copy_dtype(cfg)) as sampler:
        return run_eval(sampler, tokenizer, data, cfg)


@dataclass
class GRPORun:
    """Everything one GRPO run holds between iterations (the unit a checkpoint saves)."""

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
    generator: torch.Generator  # minibatch shuffling (sampling seeds are derived per iteration)
    sampling: SamplingParams
    collect: CollectSettings
    loss: LossSettings
    tracker: Tracker | None  # None on processes other than the main one
    state: OptimState = field(default_factory=OptimState)
    cursor: int = 0
    on_step: StepCallback | None = None
    dist: Dist = field(default_factory=Dist)
    shards: int = 1  # sampling shards per iteration, over all processes
    completed: int = 0  # the last iteration whose effects the run holds
    saved: int = -1  # the iteration of the newest checkpoint written or resumed from
    dirty: bool = False  # training has touched the state since `completed`: not saveable
    eval_pending: bool = False  # the evaluation due after `completed` has not run yet
    train_seconds: float = 0.0
    results: dict[str, Any] = field(default_factory=dict)
    policy_copy: PolicyCopy | None = None  # what rollouts and evals sample from, when enabled

    @property
    def checkpoints(self) -> Path:
        return self.out / ckpt.CHECKPOINTS_DIR

    def report(self, step: int, record: dict[str, Any]) -> None:
        if self.tracker is not None:
            self.tracker.log(record)
            if self.on_step:
                self.on_step(step, record)

    def evaluate(self, step: int, keep: int = 0) -> EvalResult:
        """Greedy eval on the held-out set (split across processes, combined)."""
        d = self.dist
        examples = self.data.eval[d.rank :: d.world_size]
        result, failed = None, None
        release_freed_memory()  # the training buffers kept for reuse: not needed here
        try:
            with fsdp.full_weights(self.model), self.autocast():
                model = self.sampler()
                result = run_eval(model, self.tokenizer, self.data, self.cfg, keep, examples)
        except Exception as err:
            failed = err
        if d.any(failed is not None):
            raise failed or PeerFailure(f"another process failed evaluating at step {step}")
        if d.active:
            means = {k: v for k, v in result.metrics().items() if k != "n"}
            merged = combine_means(d, means, result.n)
            result = replace(result, **merged, n=len(self.data.eval))
        self.record_eval(step, result.metrics())
        return result

    def record_eval(self, step: int, metrics: dict[str, Any]) -> None:
        """Log `metrics` as the held-out eval at `step` (the tracker's eval row, the step
        line)."""
        self.report(step, {"phase": "eval", "step": step, "split": "eval", **metrics})

    def autocast(self):
        return autocast_context(self.cfg.model.autocast, self.model.device)

    def sampler(self) -> PreTrainedModel:
        """The model to sample from: the merged copy, refreshed to the current weights, or the
        trained model itself."""
        if self.policy_copy is None:
            return self.model
        self.policy_copy.refresh(self.model)
        return self.policy_copy.model

    def next_prompts(self) -> list[Example]:
        n, pool = self.cfg.grpo.exploration_batchsize, self.data.train
        batch = [pool[(self.cursor + i) % len(pool)] for i in range(n)]
        self.cursor = (self.cursor + n) % len(pool)
        return batch

    def iteration(self, iteration: int, start: float) -> dict[str, Any]:
        """Collect experience, train on the buffer, log; returns the step record."""
        t_step = time.perf_counter()
        snapshot = (self.cursor, *ckpt.rng_state(self.generator))
        collected, failed = None, None
        try:
            collected = self._collect(iteration)
        except Exception as err:
            failed = err
        if self.dist.any(failed is not None):  # state is still that of the last iteration
            self.cursor = snapshot[0]
            ckpt.restore_rng(snapshot[1], snapshot[2], self.generator)
            raise failed or PeerFailure(f"another process failed in iteration {iteration}")
        if self.dist.active and self.cfg.grpo.scale_rewards == "batch":
            collected = scale_by_batch_std(self.dist, collected, self.cfg.grpo.advantage_epsilon)
        self.dirty = True
        with self.autocast():
            self.buffer.add(collected.experiences)
            t0 = time.perf_counter()
            train_stats = self.train_on_buffer(len(collected.experiences))
        sync_weights(self.model)  # stateful engines (vLLM) sample the updated policy next
        t_train = time.perf_counter() - t0
        stats, rewards, advantages, samples = merge_iteration(self.dist, collected, train_stats)
        record = {
            "phase": "grpo",
            "step": iteration,
            **stats,
            "time/train": t_train,
            "lr": self.scheduler.get_last_lr()[0],
            "step_seconds": time.perf_counter() - t_step,
            "elapsed_seconds": time.perf_counter() - start,
            **memory_record(),  # this process's
            "rewards": rewards,
            "advantages": advantages,
        }
        self.report(iteration, record)
        every = self.cfg.log_completions_every
        if every and iteration % every == 0 and self.tracker is not None:
            self.tracker.log_completions(iteration, samples)
        self.completed, self.dirty = iteration, False
        return record

    def _collect(self, iteration: int) -> Collected:
        with fsdp.full_weights(self.model):  # sharded runs: gathered once, no collectives inside
            return self._collect_gathered(iteration)

    def _collect_gathered(self, iteration: int) -> Collected:
        """One batch of prompts; with `refill_rounds`, more batches until every process has
        kept its share of exploration_batchsize groups with unequal rewards (or rounds run out)."""
        refill = self.cfg.grpo.refill_rounds
        if not refill:
            return self._collect_round(iteration, 0)
        want = self.cfg.grpo.exploration_batchsize // self.dist.world_size
        rounds: list[Collected] = []
        kept = 0
        while len(rounds) <= refill and (not rounds or self.dist.any(kept < want)):
            rounds.append(self._collect_round(iteration, len(rounds), room=want - kept))
            kept += kept_groups(rounds[-1])
        return merge_rounds(rounds, self.cfg.grpo.num_generations)

    def _collect_round(self, iteration: int, round_: int, room: int | None = None) -> Collected:
        examples = self.next_prompts()
        mine = examples[self.dist.shard_range(len(examples))]
        questions = [e.question for e in mine]
        system = self.data.task.system_prompt
        texts = [render_prompt(self.tokenizer, q, system) for q in questions]
        prompt_ids = encode_prompts(
            self.tokenizer,
            questions,
            system,
            self.sampling.max_new_tokens,
            context_length(self.model),
        )
        per_process = self.shards // self.dist.world_size
        first = self.dist.rank * per_process
        seeds = [
            # round 0 keeps the seeds runs without refill have always used
            derive_seed(self.cfg.seed, SAMPLING, iteration, s, *([round_] if round_ else []))
            for s in range(first, first + per_process)
        ]
        engine = sharded_engine(get_engine(self.cfg.generation.engine), seeds)
        if self.policy_copy is not None:
            engine = on_model(engine, self.sampler())
        with self.autocast():
            return collect_experience(
                self.model,
                self.ref_model,
                self.tokenizer,
                engine,
                self.data.task,
                self.rewards,
                mine,
                prompt_ids,
                texts,
                self.sampling,
                self.collect,
                iteration,
                None,
                room,
            )

    def train_on_buffer(self, fresh: int) -> dict[str, float]:
        """μ passes of ceil(fresh / batch_size) minibatches; counts are global, so every process
        draws as many minibatches (of batch_size / W of its own completions) as the others."""
        total = int(self.dist.sum(fresh)) if self.dist.active else fresh
        if not total:
            return {}
        size = self.cfg.optim.batch_size
        num_batches = self.cfg.grpo.mu * math.ceil(total / size)
        local = size // self.dist.world_size
        if len(self.buffer):
            batches = self.buffer.minibatches(num_batches, local, self.generator)
        else:
            batches = [[] for _ in range(num_batches)]
        return train_pass(
            self.model,
            self.optimizer,
            self.scheduler,
            batches,
            self.loss,
            self.state,
            self.tokenizer.pad_token_id,
            sync=self.dist.sync_gradients if self.dist.active else None,
        )

    def save_checkpoint(self) -> Path | None:
        """Save iteration `completed` (collective: every process sends its own state)."""
        return save_run(self)


def setup_run(
    cfg: GRPOConfig,
    on_step: StepCallback | None = None,
    model: PreTrainedModel | None = None,
    tokenizer: Tokenizer | None = None,
    dist: Dist | None = None,
) -> GRPORun:
    """Validate, load and build everything (and resume, when asked); fails on bad input before
    any expensive work."""
    dist = dist or Dist()
    out = Path(cfg.output_dir)
    root = out / ckpt.CHECKPOINTS_DIR
    start_from = resume_point(cfg, root)
    prepare_output_dir(out, cfg.overwrite, resume=start_from is not None)
    shards = check_divisible(
        dist.world_size, cfg.grpo.exploration_batchsize, cfg.optim.batch_size, cfg.sampling_shards
    )
    if start_from is not None:
        check_resumable(start_from, cfg, dist, shards)
    if dist.fsdp:
        fsdp.check_config(cfg.generation.engine, cfg.model.load_in_4bit)
    data = prepare_data(cfg)
    data.task = GuardedTask(data.task)
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
    dist.barrier()  # every process has checked the output folder before anything is written
    if dist.is_main:
        if start_from is None:
            reset_run_files(out, [METRICS_FILE, COMPLETIONS_FILE])
            shutil.rmtree(root, ignore_errors=True)  # an earlier run's checkpoints
        ckpt.remove_temporary(root)
        dump_config(cfg, out / "config.yaml")
    run = _build_run(cfg, out, data, rewards, model, tokenizer, dist, shards, start_from)
    run.on_step = on_step
    if start_from is not None:
        restore_run(run, start_from)
    return run


def _build_run(
    cfg: GRPOConfig,
    out: Path,
    data: RunData,
    rewards: list[NamedReward],
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    dist: Dist,
    shards: int,
    start_from: Path | None = None,
) -> GRPORun:
    """The run's parts, in the order sharding needs: sampling copy and reference from the plain
    starting model, then resumed weights, then sharding, then the optimizer (over the sharded
    parameters)."""
    g, o = cfg.grpo, cfg.optim
    copy_dtype = policy_copy_dtype(cfg)
    policy_copy = PolicyCopy(model, copy_dtype) if copy_dtype is not None else None
    ref_model = reference_model(model, cfg, copy_dtype)
    if start_from is not None:
        ckpt.load_model_weights(model, start_from / ckpt.MODEL_DIR)
    if dist.fsdp:
        fsdp.shard(model, dist, sum_gradients=g.loss_type == "dapo")
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
        policy_copy=policy_copy,
        cfg=cfg,
        out=out,
        data=data,
        model=model,
        tokenizer=tokenizer,
        ref_model=ref_model,
        rewards=rewards,
        optimizer=optimizer,
        scheduler=scheduler,
        buffer=ExperienceBuffer(g.buffer_size // dist.world_size),
        generator=torch.Generator().manual_seed(derive_seed(cfg.seed, SHUFFLE, dist.rank)),
        sampling=SamplingParams(
            gen.max_new_tokens,
            gen.temperature,
            gen.top_p,
            (ANSWER_CLOSE,) if gen.stop_at_answer else (),
            gen.min_new_tokens,
        ),
        collect=CollectSettings(
            g.num_generations,
            # several processes: centred here, divided by the std of all rewards in the trainer
            "none" if dist.active and g.scale_rewards == "batch" else g.scale_rewards,
            g.advantage_epsilon,
            g.beta,
            g.skip_zero_std_groups,
            o.batch_size,
            compute_old_logprobs=not reuse,
            blame=g.blame,
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
            cfg.max_nonfinite_in_a_row,
        ),
        tracker=Tracker(out, cfg.report_to, config=cfg.model_dump(mode="json"))
        if dist.is_main
        else None,
        dist=dist,
        shards=shards,
    )


def _loop(run: GRPORun, stop: ckpt.StopRequest) -> None:
    cfg = run.cfg
    start = time.perf_counter() - run.train_seconds
    for iteration in range(run.completed + 1, cfg.num_iterations + 1):
        run.iteration(iteration, start)
        if cfg.eval.every and iteration % cfg.eval.every == 0 and iteration < cfg.num_iterations:
            run.eval_pending = True
            run.evaluate(iteration)
        run.eval_pending = False
        run.train_seconds = time.perf_counter() - start
        stopping = run.dist.any(stop.requested)
        if stopping or (cfg.checkpoint_every and iteration % cfg.checkpoint_every == 0):
            run.save_checkpoint()
        if stopping:
            raise ckpt.RunInterrupted(
                f"interrupted at iteration {iteration}; resume with --resume "
                f"(checkpoint in {run.checkpoints})"
            )


START_CORRECT = "baseline_correct"  # run.results key (checkpointed) until the final eval


def _paired_with_start(start: list[bool] | None, final: list[bool], n: int) -> dict[str, Any]:
    """`{"paired": ...}`: the final eval against the step-0 eval, prompt by prompt; empty when
    either holds only part of the eval prompts (a process's shard under DDP) or is missing."""
    if not start or len(start) != n or len(final) != n:
        return {}
    return {"paired": {"greedy": greedy_record(start, final)}}


def train_grpo(
    cfg: GRPOConfig,
    on_step: StepCallback | None = None,
    model: PreTrainedModel | None = None,
    tokenizer: Tokenizer | None = None,
    start_eval: EvalResult | None = None,
) -> dict[str, Any]:
    """Run GRPO as `cfg` says (resuming when asked); returns the results dict also written to
    results.json. SIGINT/SIGTERM stop it after the current iteration, with a checkpoint.

    With an eval at step 0 (`eval.baseline`), the results pair the final eval with it prompt
    by prompt (`paired`: prompts gained and lost, sign test). `start_eval`: the starting model
    already scored the way the eval at step 0 scores it (same model, sampler, autocast, eval
    prompts and settings: the pipeline's baseline when no SFT ran); it is recorded as the
    step-0 eval instead of running it again, which on a 2-core CPU costs minutes."""
    run = setup_run(cfg, on_step, model, tokenizer, init_distributed())
    data = run.data
    if run.completed == 0:
        run.results = {
            "model": cfg.model.name,
            "task": cfg.task.name,
            "train_size": len(data.train),
            "eval_size": len(data.eval),
            "eval_overlap_dropped": data.overlap_dropped,
        }
        if cfg.eval.baseline:
            if start_eval is None:
                start = run.evaluate(0)
            else:
                start = start_eval
                run.record_eval(0, start.metrics())
            run.results["baseline"] = start.metrics()
            run.results[START_CORRECT] = start.correct  # popped into `paired` at the end
    elif run.eval_pending and run.completed < cfg.num_iterations:
        run.evaluate(run.completed)  # the evaluation that failed before the checkpoint
        run.eval_pending = False
    with ckpt.stop_on_signals() as stop, saved_on_failure(run):
        _loop(run, stop)
    final = run.evaluate(cfg.num_iterations, keep=20)
    model_dir = run.out / "model"
    weights = fsdp.full_model_state(run.model) if fsdp.is_sharded(run.model) else None
    if run.dist.is_main:
        save_model(run.model, run.tokenizer, model_dir, state_dict=weights)
    start_correct = run.results.pop(START_CORRECT, None)
    results = {
        **run.results,
        **_paired_with_start(start_correct, final.correct, len(data.eval)),
        "final": final.metrics(),
        "eval_samples": final.samples,
        "model_dir": str(model_dir),
        "iterations": cfg.num_iterations,
        "optimizer_steps": run.state.optimizer_steps,
        "train_seconds": run.train_seconds,
    }
    if run.dist.is_main:
        write_json(run.out / "results.json", results)
    if run.tracker is not None:
        run.tracker.close()
    run.dist.barrier()
    return results
