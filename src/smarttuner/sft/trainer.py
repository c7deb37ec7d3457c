"""Supervised warm-up: LoRA (or full) fine-tuning on `<think>…</think><answer>…</answer>`
completions, loss on completion tokens only, with a validation split scored every epoch
(loss, task accuracy, format rate) and the adapter saved for GRPO to continue.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, get_scheduler
from transformers import PreTrainedTokenizerBase as Tokenizer

from smarttuner.config import SFTConfig, SFTSettings, dump_config
from smarttuner.evaluate import evaluate_task
from smarttuner.malloc import HeapGrowthGuard, release_freed_memory
from smarttuner.memory import memory_record
from smarttuner.models import autocast_context, load_model, save_model
from smarttuner.outputs import prepare_output_dir, reset_run_files, write_json
from smarttuner.prompts import render_prompt
from smarttuner.rollout.types import positions_from_mask
from smarttuner.sft.records import SFTRecord
from smarttuner.sft.sources import SourceContext, make_records
from smarttuner.sft.traces import programmatic_records
from smarttuner.tasks import get_task
from smarttuner.tasks.base import Example, Task
from smarttuner.tasks.splits import balance_by_answer, drop_overlap
from smarttuner.tracking import METRICS_FILE, JsonlWriter, Tracker

log = logging.getLogger(__name__)
IGNORE = -100


def tokenize_record(
    tokenizer: Tokenizer, record: SFTRecord, system_prompt: str | None
) -> tuple[list[int], list[int]]:
    """(input_ids, labels): prompt tokens labelled IGNORE, completion + EOS labelled."""
    prompt = render_prompt(tokenizer, record.question, system_prompt)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(record.completion, add_special_tokens=False)["input_ids"]
    c_ids = c_ids + [tokenizer.eos_token_id]
    return p_ids + c_ids, [IGNORE] * len(p_ids) + c_ids


def collate_sft(rows: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad to the longest row: input_ids, attention_mask, labels — each [n, L].

    Left padding puts every completion at the right edge, so the loss needs logits only for
    the last `max completion length + 1` positions (`logits_to_keep`), not for the prompts."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, width - len(x) :] = torch.tensor(x)
        labels[i, width - len(y) :] = torch.tensor(y)
        mask[i, width - len(x) :] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def batch_loss(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Token-mean cross-entropy over labelled tokens, and their count."""
    batch = {k: v.to(model.device) for k, v in batch.items()}
    labelled = batch["labels"] != IGNORE  # [n, L]
    first = int(labelled.float().argmax(dim=1).min())  # earliest labelled position in the batch
    keep = batch["labels"].shape[1] - first + 1
    positions = positions_from_mask(batch["attention_mask"])
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=positions,
        logits_to_keep=keep,
    ).logits[:, :-1]  # [n, keep-1, V]: predicts tokens first..L-1
    targets = batch["labels"][:, first:]  # [n, keep-1]
    n = int((targets != IGNORE).sum())
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        targets.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    return loss / max(n, 1), n


def accumulate_gradients(
    model: PreTrainedModel, rows: list[tuple[list[int], list[int]]], micro: int, pad_id: int
) -> float:
    """Backward of the token-mean cross-entropy over all `rows`, `micro` rows per forward: each
    piece's token sum is divided by the labelled tokens of all rows, so the gradients add up to
    those of one pass over the whole batch. Returns the loss; stops at a non-finite piece
    (nothing of it is accumulated)."""
    pieces = [collate_sft(rows[i : i + micro], pad_id) for i in range(0, len(rows), micro)]
    total = max(sum(int((p["labels"] != IGNORE).sum()) for p in pieces), 1)
    value = 0.0
    for piece in pieces:
        loss, n = batch_loss(model, piece)
        if not torch.isfinite(loss):
            return float(loss)
        (loss * (n / total)).backward()
        value += float(loss) * n / total
    return value


@torch.no_grad()
def validation_loss(model, rows, batch_size: int, pad_id: int) -> float:
    model.eval()
    total, count = 0.0, 0
    for s in range(0, len(rows), batch_size):
        loss, n = batch_loss(model, collate_sft(rows[s : s + batch_size], pad_id))
        total += float(loss) * n
        count += n
    return total / max(count, 1)


@dataclass
class SFTData:
    records: list[SFTRecord]
    report: dict[str, Any]
    train_rows: list[tuple[list[int], list[int]]]
    val_rows: list[tuple[list[int], list[int]]]
    val_examples: list[Example]


def split_examples(task: Task, cfg: SFTConfig) -> tuple[list[Example], list[Example]]:
    """(validation, training) examples from the dataset seed, none of them in the eval set."""
    s = cfg.sft
    n_val = max(1, round(s.num_datapoints * s.val_fraction)) if s.val_fraction > 0 else 0
    held_out = task.examples(cfg.task.eval_seed, cfg.eval.num_examples)
    wanted = s.num_datapoints + n_val
    pool = task.examples(cfg.task.dataset_seed, 2 * wanted + len(held_out))
    pool = drop_overlap(pool, held_out)
    examples = (balance_by_answer(pool) if cfg.task.balance_answers else pool)[:wanted]
    return examples[:n_val], examples[n_val:]


def prepare_sft_data(cfg: SFTConfig, task: Task, model, tokenizer, out: Path) -> SFTData:
    """Make the training records with the configured source, log them, and tokenize."""
    val_examples, train_examples = split_examples(task, cfg)
    s = cfg.sft
    context = SourceContext(
        task,
        cfg.task.name,
        train_examples,
        s,
        model,
        tokenizer,
        cache_dir=out / "cache",
        seed=cfg.seed,
    )
    with autocast_context(cfg.model.autocast, model.device):
        made = make_records(s.source, context)
    if not made.records:
        raise ValueError(f"SFT source {s.source!r} produced no training records")
    data_log = JsonlWriter(out / "sft_data.jsonl")
    for rec in made.records:
        data_log.write(rec.to_json())
    log.info("SFT data: %s", made.report)
    val_records = programmatic_records(cfg.task.name, val_examples)
    system = task.system_prompt
    return SFTData(
        records=made.records,
        report=made.report,
        train_rows=[tokenize_record(tokenizer, r, system) for r in made.records],
        val_rows=[tokenize_record(tokenizer, r, system) for r in val_records],
        val_examples=val_examples,
    )


def validate_epoch(model, tokenizer, task: Task, data: SFTData, s: SFTSettings) -> dict[str, float]:
    """Validation loss on held-back traces, and accuracy / format rate of greedy answers."""
    metrics: dict[str, float] = {}
    if data.val_rows:
        metrics["val_loss"] = validation_loss(
            model, data.val_rows, s.batch_size, tokenizer.pad_token_id
        )
    if data.val_examples and s.val_eval_examples:
        ev = evaluate_task(
            model, tokenizer, task, data.val_examples[: s.val_eval_examples], s.max_new_tokens
        )
        metrics.update(val_accuracy=ev.accuracy, val_format_rate=ev.format_rate)
    return metrics


def train_sft(
    cfg: SFTConfig,
    model: PreTrainedModel | None = None,
    tokenizer: Tokenizer | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run SFT as `cfg` says; returns results (also written to OUTPUT/results.json).

    `on_epoch` gets each epoch's record (losses, validation); `on_step` gets a small record
    after every optimizer step (step, total_steps, epoch, loss, seconds spent training)."""
    out = prepare_output_dir(Path(cfg.output_dir), cfg.overwrite)
    s = cfg.sft
    task = get_task(cfg.task.name, **cfg.task.params)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if model is None or tokenizer is None:
        model, tokenizer = load_model(cfg.model, cfg.lora)
    reset_run_files(out, [METRICS_FILE, "sft_data.jsonl"])
    dump_config(cfg, out / "config.yaml")
    data = prepare_sft_data(cfg, task, model, tokenizer, out)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=s.learning_rate, weight_decay=s.weight_decay)
    total_steps = max(1, math.ceil(math.ceil(len(data.train_rows) / s.batch_size) * s.num_epochs))
    scheduler = get_scheduler(
        "linear",
        optimizer,
        num_training_steps=total_steps,
        num_warmup_steps=int(s.warmup_ratio * total_steps),
    )
    tracker = Tracker(out, cfg.report_to, config=cfg.model_dump(mode="json"))
    start = time.perf_counter()
    step, epoch, history, train_seconds = 0, 0, [], 0.0
    autocast = autocast_context(cfg.model.autocast, model.device)
    heap = HeapGrowthGuard()  # batches change shape: keep the reused heap from ratcheting up
    while step < total_steps:
        epoch += 1
        order = list(range(len(data.train_rows)))
        random.shuffle(order)
        model.train()
        losses = []
        for b in range(0, len(order), s.batch_size):
            batch_start = time.perf_counter()
            if step >= total_steps:
                break
            rows = [data.train_rows[i] for i in order[b : b + s.batch_size]]
            with autocast:
                loss = accumulate_gradients(
                    model, rows, s.micro_batch_size or s.batch_size, tokenizer.pad_token_id
                )
            if not math.isfinite(loss):
                raise FloatingPointError(f"SFT loss became {loss} at step {step + 1}")
            torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss)
            heap.after_step()
            step += 1
            train_seconds += time.perf_counter() - batch_start
            if on_step:
                on_step(
                    {
                        "phase": "sft_step",
                        "step": step,
                        "total_steps": total_steps,
                        "epoch": epoch,
                        "loss": loss,
                        "elapsed_seconds": train_seconds,
                        **memory_record(),
                    }
                )
        record: dict[str, Any] = {
            "phase": "sft",
            "epoch": epoch,
            "step": step,
            "train_loss": sum(losses) / max(len(losses), 1),
            "lr": scheduler.get_last_lr()[0],
            "heap_releases": heap.releases,
        }
        release_freed_memory()  # training buffers kept for reuse: not needed to validate
        with autocast:
            record.update(validate_epoch(model, tokenizer, task, data, s))
        record["elapsed_seconds"] = time.perf_counter() - start
        record.update(memory_record())
        tracker.log(record)
        history.append(record)
        if on_epoch:
            on_epoch(record)
    model_dir = save_model(model, tokenizer, out / "model")
    results = {
        "model": cfg.model.name,
        "task": cfg.task.name,
        "source": s.source,
        "data_report": data.report,
        "num_records": len(data.records),
        "epochs": history,
        "model_dir": str(model_dir),
        "train_seconds": time.perf_counter() - start,
    }
    write_json(out / "results.json", results)
    tracker.close()
    return results
