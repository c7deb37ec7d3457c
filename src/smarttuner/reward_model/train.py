"""Train a reward model from preference pairs with the Bradley–Terry loss.

A causal LM backbone gets a fresh one-output score head (`AutoModelForSequenceClassification`,
`num_labels=1`); it is trained with LoRA (task type SEQ_CLS, the head trained fully) or in
full. Each step scores the chosen and rejected completions of `batch_size` pairs in one forward
pass and minimises `−log σ(r_chosen − r_rejected)`. Pairwise accuracy on the held-out pairs is
measured before and after training.

Output (under `output_dir`): `model/` — a plain HF folder (LoRA merged unless
`train.merge_lora` is false, then the adapter) that the `reward_model` reward loads;
`metrics.jsonl` (loss and batch accuracy every `log_every` steps); `results.json`;
`config.yaml`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, get_scheduler
from transformers import PreTrainedTokenizerBase as Tokenizer

from smarttuner.config import dump_config
from smarttuner.models import add_lora
from smarttuner.outputs import prepare_output_dir, reset_run_files, write_json
from smarttuner.reward_model.config import RewardModelConfig
from smarttuner.reward_model.data import PreferencePair, load_pairs, split_pairs
from smarttuner.reward_model.loss import bradley_terry_loss, pairwise_accuracy
from smarttuner.reward_model.scoring import pair_rewards, score_pairs

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
StepCallback = Callable[[dict[str, Any]], None]


def load_backbone(cfg: RewardModelConfig) -> tuple[PreTrainedModel, Tokenizer]:
    """The configured model with a 1-output score head (a fresh head for a causal LM)."""
    from transformers import AutoModelForSequenceClassification

    from smarttuner.models import (
        ModelLoadError,
        is_adapter_dir,
        load_tokenizer,
        resolve_device,
        resolve_dtype,
        resolve_model_path,
    )

    path = resolve_model_path(cfg.model.name)
    if is_adapter_dir(path):
        raise ModelLoadError(
            f"{path} is a PEFT adapter; a reward model starts from a full model (merge it first)"
        )
    device = resolve_device(cfg.model.device)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=1,
            dtype=resolve_dtype(cfg.model.dtype, device),
            trust_remote_code=cfg.model.trust_remote_code,
        )
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot load reward-model backbone {path!r}: {err}") from None
    tokenizer = load_tokenizer(path, cfg.model.trust_remote_code)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device), tokenizer


def held_out_accuracy(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    pairs: list[PreferencePair],
    batch_size: int,
    max_length: int,
) -> float:
    """Share of `pairs` whose chosen completion the model scores higher."""
    prompts = [p.prompt for p in pairs]
    chosen = score_pairs(
        model, tokenizer, prompts, [p.chosen for p in pairs], batch_size, max_length
    )
    rejected = score_pairs(
        model, tokenizer, prompts, [p.rejected for p in pairs], batch_size, max_length
    )
    return pairwise_accuracy(torch.tensor(chosen), torch.tensor(rejected))


def pair_batches(
    pairs: list[PreferencePair], batch_size: int, rng: random.Random
) -> Iterator[list[PreferencePair]]:
    """Endless minibatches, reshuffled every epoch (the last short batch of an epoch kept)."""
    while True:
        order = list(range(len(pairs)))
        rng.shuffle(order)
        for s in range(0, len(order), batch_size):
            yield [pairs[i] for i in order[s : s + batch_size]]


def train_reward_model(
    cfg: RewardModelConfig,
    model: PreTrainedModel | None = None,
    tokenizer: Tokenizer | None = None,
    on_step: StepCallback | None = None,
) -> dict[str, Any]:
    """Train, evaluate and save a reward model; returns the results written to results.json.

    `model` and `tokenizer` may be given (tests, notebooks) instead of loading `cfg.model`; a
    given model must already be a `*ForSequenceClassification` with one label."""
    out = prepare_output_dir(Path(cfg.output_dir), cfg.overwrite)
    pairs = load_pairs(cfg.data)
    train, val = split_pairs(pairs, cfg.data.val_fraction, cfg.seed)
    torch.manual_seed(cfg.seed)
    if model is None or tokenizer is None:
        model, tokenizer = load_backbone(cfg)
    if cfg.lora.enabled:
        model = add_lora(model, cfg.lora, task_type="SEQ_CLS")  # score head trained in full
    reset_run_files(out, [METRICS_FILE])
    dump_config(cfg, out / "config.yaml")

    t = cfg.train
    steps = t.max_steps or max(1, math.ceil(t.num_epochs * len(train) / t.batch_size))
    accuracy_before = held_out_accuracy(model, tokenizer, val, t.eval_batch_size, t.max_length)
    log.info(
        "%d training pairs, %d held out; accuracy before %.3f",
        len(train),
        len(val),
        accuracy_before,
    )
    started = time.perf_counter()
    losses = run_steps(model, tokenizer, train, cfg, steps, out / METRICS_FILE, on_step)
    seconds = time.perf_counter() - started
    accuracy = held_out_accuracy(model, tokenizer, val, t.eval_batch_size, t.max_length)
    model_dir = save_reward_model(model, tokenizer, out / "model", merge=t.merge_lora)
    results = {
        "num_train_pairs": len(train),
        "num_val_pairs": len(val),
        "steps": steps,
        "val_accuracy_before": accuracy_before,
        "val_accuracy": accuracy,
        "train_loss_first": losses[0],
        "train_loss_last": sum(losses[-10:]) / len(losses[-10:]),
        "train_seconds": seconds,
        "model_dir": str(model_dir),
    }
    write_json(out / RESULTS_FILE, results)
    log.info("held-out pairwise accuracy %.3f (before %.3f)", accuracy, accuracy_before)
    return results


def run_steps(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    train: list[PreferencePair],
    cfg: RewardModelConfig,
    steps: int,
    metrics_path: Path,
    on_step: StepCallback | None,
) -> list[float]:
    """`steps` optimizer steps of the Bradley–Terry loss; returns every step's loss."""
    t = cfg.train
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=t.weight_decay)
    scheduler = get_scheduler(
        "linear",
        optimizer,
        num_warmup_steps=round(t.warmup_ratio * steps),
        num_training_steps=steps,
    )
    batches = pair_batches(train, t.batch_size, random.Random(cfg.seed))
    model.train()
    losses = []
    with metrics_path.open("a") as metrics:
        for step in range(1, steps + 1):
            batch = next(batches)
            b = len(batch)
            rewards = pair_rewards(
                model,
                tokenizer,
                [p.prompt for p in batch] * 2,
                [p.chosen for p in batch] + [p.rejected for p in batch],
                t.max_length,
            )  # [2B]: chosen then rejected
            loss = bradley_terry_loss(rewards[:b], rewards[b:])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"reward-model loss is {loss.item()} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            if step % t.log_every == 0 or step == steps:
                record = {
                    "step": step,
                    "loss": loss.item(),
                    "batch_accuracy": pairwise_accuracy(rewards[:b], rewards[b:]),
                    "learning_rate": scheduler.get_last_lr()[0],
                }
                metrics.write(json.dumps(record) + "\n")
                if on_step is not None:
                    on_step(record)
    model.eval()
    return losses


def save_reward_model(
    model: PreTrainedModel, tokenizer: Tokenizer, path: Path, merge: bool = True
) -> Path:
    """Save a plain HF folder: LoRA merged into the backbone (or the adapter when `merge` is
    false), the score head, the tokenizer; `pad_token_id` set so batched scoring works."""
    from smarttuner.models import is_peft, save_model

    if merge and is_peft(model):
        model = model.merge_and_unload()
    model.config.pad_token_id = tokenizer.pad_token_id
    return save_model(model, tokenizer, path)
