"""The SFT loop: prompt tokens carry no loss, training moves the adapter, the saved adapter
is what GRPO continues (same weights, trainable) with the SFT model as its KL reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from smarttuner.config import GRPOConfig, LoraSettings, ModelConfig, SFTConfig, build_config
from smarttuner.grpo.trainer import setup_run
from smarttuner.models import REFERENCE_ADAPTER, load_model, reference_mode
from smarttuner.sft import train_sft
from smarttuner.sft.records import SFTRecord
from smarttuner.sft.trainer import (
    IGNORE,
    accumulate_gradients,
    batch_loss,
    collate_sft,
    tokenize_record,
)


def test_prompt_tokens_are_masked_out(tiny_tokenizer) -> None:
    record = SFTRecord("What is 2 + 2?", "<think> 2 + 2 = 4 </think><answer> 4 </answer>")
    ids, labels = tokenize_record(tiny_tokenizer, record, "system")
    completion = tiny_tokenizer(record.completion, add_special_tokens=False)["input_ids"]
    n_prompt = len(ids) - len(completion) - 1
    assert labels[:n_prompt] == [IGNORE] * n_prompt
    assert labels[n_prompt:] == completion + [tiny_tokenizer.eos_token_id]
    assert ids[n_prompt:] == labels[n_prompt:]


def test_loss_counts_only_completion_tokens(tiny_model, tiny_tokenizer) -> None:
    # labels [-, -, -, 7, 8, 9]: the targets after the shift are predicted from positions 2, 3, 4;
    # the prompt positions 0 and 1 predict masked labels and contribute nothing
    ids = [1, 5, 6, 7, 8, 9]
    rows = [(ids, [IGNORE, IGNORE, IGNORE, 7, 8, 9])]
    loss, n = batch_loss(tiny_model, collate_sft(rows, tiny_tokenizer.pad_token_id))
    assert n == 3
    logits = tiny_model(torch.tensor([ids])).logits[0]
    expected = torch.nn.functional.cross_entropy(logits[2:5], torch.tensor([7, 8, 9]))
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    with_prompt = torch.nn.functional.cross_entropy(logits[0:5], torch.tensor([5, 6, 7, 8, 9]))
    assert not torch.isclose(loss, with_prompt)


def test_left_padded_batch_loss_equals_rows_alone(tiny_model, tiny_tokenizer) -> None:
    rows = [
        ([1, 5, 6, 7, 8, 9], [IGNORE] * 3 + [7, 8, 9]),
        ([1, 5, 6, 7, 8, 9, 10, 11], [IGNORE] * 6 + [10, 11]),
    ]
    loss, n = batch_loss(tiny_model, collate_sft(rows, tiny_tokenizer.pad_token_id))
    total, count = 0.0, 0
    for ids, labels in rows:
        logits = tiny_model(torch.tensor([ids])).logits[0, :-1]
        target = torch.tensor(labels[1:])
        total += torch.nn.functional.cross_entropy(
            logits, target, ignore_index=IGNORE, reduction="sum"
        )
        count += int((target != IGNORE).sum())
    assert n == count
    torch.testing.assert_close(loss, total / count, rtol=1e-5, atol=1e-5)


def test_micro_batches_accumulate_the_whole_batch_gradient(tiny_model, tiny_tokenizer) -> None:
    rows = [
        ([1, 5, 6, 7, 8, 9], [IGNORE] * 3 + [7, 8, 9]),
        ([1, 5, 6, 7, 8, 9, 10, 11], [IGNORE] * 6 + [10, 11]),
        ([1, 4, 9, 9, 2], [IGNORE] * 2 + [9, 9, 2]),
    ]
    pad = tiny_tokenizer.pad_token_id

    def grads(micro: int) -> tuple[float, list[torch.Tensor]]:
        tiny_model.zero_grad(set_to_none=True)
        loss = accumulate_gradients(tiny_model, rows, micro, pad)
        return loss, [p.grad.clone() for p in tiny_model.parameters()]

    whole_loss, whole = grads(3)
    expected, _ = batch_loss(tiny_model, collate_sft(rows, pad))
    assert whole_loss == pytest.approx(float(expected), rel=1e-6)
    for micro in (1, 2):  # pieces of unequal token counts: weighted by tokens, not by piece
        loss, got = grads(micro)
        assert loss == pytest.approx(whole_loss, rel=1e-5)
        for a, b in zip(got, whole, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def _sft_config(model_dir: str, out: Path, **extra) -> SFTConfig:
    values = {
        "model.name": model_dir,
        "task.name": "arithmetic",
        "output_dir": str(out),
        "sft.num_datapoints": 12,
        "sft.num_epochs": 2,
        "sft.batch_size": 4,
        "sft.learning_rate": 1e-2,
        "sft.val_eval_examples": 2,
        "sft.max_new_tokens": 8,
        "eval.num_examples": 8,
        **extra,
    }
    return build_config(SFTConfig, None, values)


def test_sft_logs_every_epoch_and_step_and_keeps_eval_prompts_out(tiny_model_dir, tmp_path) -> None:
    cfg = _sft_config(tiny_model_dir, tmp_path / "sft")
    steps: list[dict] = []
    results = train_sft(cfg, on_step=steps.append)
    # 12 traces in batches of 4, two epochs: six optimizer steps, each reported once
    assert [(r["step"], r["epoch"], r["total_steps"]) for r in steps] == [
        (1, 1, 6),
        (2, 1, 6),
        (3, 1, 6),
        (4, 2, 6),
        (5, 2, 6),
        (6, 2, 6),
    ]
    assert all(r["loss"] > 0 and r["elapsed_seconds"] > 0 for r in steps)
    assert all(0 < r["rss_mb"] <= r["peak_rss_mb"] for r in steps)  # memory of every step
    assert [r["elapsed_seconds"] for r in steps] == sorted(r["elapsed_seconds"] for r in steps)
    lines = [json.loads(x) for x in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    for r in lines:
        assert {"train_loss", "val_loss", "val_accuracy", "val_format_rate", "lr"} <= set(r)
        assert all(torch.isfinite(torch.tensor(r[k])) for k in ("train_loss", "val_loss"))
    assert lines[1]["train_loss"] < lines[0]["train_loss"]
    data = [json.loads(x) for x in (tmp_path / "sft" / "sft_data.jsonl").read_text().splitlines()]
    assert len(data) == results["num_records"] == 12
    from smarttuner.tasks import get_task

    held_out = {e.question for e in get_task("arithmetic").examples(123, 8)}
    assert not held_out & {d["question"] for d in data}


def test_grpo_continues_the_sft_adapter_with_sft_as_reference(tiny_model_dir, tmp_path) -> None:
    sft = train_sft(_sft_config(tiny_model_dir, tmp_path / "sft"))
    saved = load_file(Path(sft["model_dir"]) / "adapter_model.safetensors")
    cfg = build_config(
        GRPOConfig,
        None,
        {
            "model.name": sft["model_dir"],
            "task.name": "arithmetic",
            "output_dir": str(tmp_path / "grpo"),
            "grpo.exploration_batchsize": 2,
            "grpo.num_generations": 2,
            "optim.batch_size": 4,
            "generation.max_new_tokens": 8,
            "eval.num_examples": 2,
            "grpo.buffer_size": 4,
        },
    )
    run = setup_run(cfg)
    model = run.model
    assert REFERENCE_ADAPTER in model.peft_config
    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all(".default." in n for n in trained)
    # the trainable adapter starts from exactly the SFT weights (not a fresh second adapter)
    for key, value in saved.items():
        name = key.replace(".weight", ".default.weight")
        match = [p for n, p in model.named_parameters() if n.endswith(name.split("model.", 1)[1])]
        assert match, key
        torch.testing.assert_close(match[0].detach(), value)
    # the reference is the SFT model: equal logits now, and it stays put when the policy moves
    x = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        before = model(x).logits
        with reference_mode(model):
            ref = model(x).logits
    torch.testing.assert_close(before, ref)
    with torch.no_grad():
        for p in trained.values():
            p.add_(0.05)
        moved = model(x).logits
        with reference_mode(model):
            ref_after = model(x).logits
    assert not torch.allclose(moved, ref_after)
    torch.testing.assert_close(ref, ref_after)


def test_loaded_adapter_trains_the_same_adapter(tiny_model_dir, tmp_path) -> None:
    net, tok = load_model(ModelConfig(name=tiny_model_dir), LoraSettings(r=4))
    from smarttuner.models import save_model

    save_model(net, tok, tmp_path / "adapter")
    again, _ = load_model(ModelConfig(name=str(tmp_path / "adapter")), LoraSettings())
    assert list(again.peft_config) == ["default"]
    assert again.peft_config["default"].r == 4  # the saved adapter, not a new r=32 one
    assert any(p.requires_grad for p in again.parameters())


def test_grpo_training_pool_can_be_balanced_by_answer(tiny_model_dir, tmp_path) -> None:
    from smarttuner.grpo.trainer import prepare_data

    cfg = build_config(
        GRPOConfig,
        None,
        {
            "model.name": tiny_model_dir,
            "task.name": "syllogism",
            "task.num_train_examples": 60,
            "task.balance_answers": True,
            "output_dir": str(tmp_path / "x"),
        },
    )
    data = prepare_data(cfg)
    answers = [e.answer for e in data.train]
    assert answers.count("Yes") == answers.count("No") > 0
    assert answers[:4] == ["No", "Yes", "No", "Yes"]
