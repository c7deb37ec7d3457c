"""Checkpoint files one piece at a time: optimizer, scheduler, RNG and buffer state survive a
safetensors + JSON round trip exactly; folders appear atomically with a checksummed manifest;
damaged or half-written ones are never picked; only the newest K are kept; signals are caught
and the previous handlers come back."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import get_scheduler

import smarttuner.checkpoint as ckpt
from smarttuner.grpo.buffer import Experience
from smarttuner.grpo.checkpoint import config_differences


def _adamw(seed: int = 0):
    torch.manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(4))]
    opt = torch.optim.AdamW(params, lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1)
    sched = get_scheduler("cosine", opt, num_warmup_steps=2, num_training_steps=10)
    return params, opt, sched


def _step(params, opt, sched, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    opt.step()
    sched.step()


def test_optimizer_and_scheduler_round_trip_exactly(tmp_path: Path) -> None:
    params, opt, sched = _adamw()
    for s in range(3):
        _step(params, opt, sched, s)
    tensors, plain = ckpt.optimizer_state(opt)
    ckpt.save_tensors(tmp_path / "opt.safetensors", tensors)
    ckpt.write_json_file(tmp_path / "opt.json", {"opt": plain, "sched": sched.state_dict()})

    # a fresh optimizer over parameters with the same values, loaded from the files
    params2 = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt2 = torch.optim.AdamW(params2, lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1)
    sched2 = get_scheduler("cosine", opt2, num_warmup_steps=2, num_training_steps=10)
    saved = ckpt.read_json_file(tmp_path / "opt.json")
    ckpt.load_optimizer_state(opt2, ckpt.load_tensors(tmp_path / "opt.safetensors"), saved["opt"])
    sched2.load_state_dict(saved["sched"])
    assert opt2.param_groups[0]["betas"] == (0.9, 0.99)  # a tuple again, not a JSON list

    for s in range(3, 6):  # the next steps are bit-identical
        _step(params, opt, sched, s)
        _step(params2, opt2, sched2, s)
        assert sched.get_last_lr() == sched2.get_last_lr()
        for a, b in zip(params, params2, strict=True):
            assert torch.equal(a, b)


def test_rng_states_round_trip(tmp_path: Path) -> None:
    shuffle = torch.Generator().manual_seed(7)
    torch.randperm(5, generator=shuffle)
    tensors, plain = ckpt.rng_state(shuffle)
    ckpt.save_tensors(tmp_path / "rng.safetensors", tensors)
    ckpt.write_json_file(tmp_path / "rng.json", plain)

    def draws():
        return (
            random.random(),
            float(np.random.rand()),
            float(torch.rand(1)),
            torch.randperm(9, generator=shuffle).tolist(),
        )

    expected = draws()
    draws()  # move every RNG on
    ckpt.restore_rng(
        ckpt.load_tensors(tmp_path / "rng.safetensors"),
        ckpt.read_json_file(tmp_path / "rng.json"),
        shuffle,
    )
    assert draws() == expected


def test_experience_buffer_round_trip(tmp_path: Path) -> None:
    items = [
        Experience(torch.tensor([5, 6, 7]), torch.tensor([8, 9]), None, None, 0.25, 1, 0),
        Experience(
            torch.tensor([5]),
            torch.tensor([1, 2, 3]),
            torch.tensor([-0.5, -1.25, -2.0]),
            torch.tensor([-0.1, -0.2, -0.3]),
            -1.0 / 3.0,  # not representable in float32: must come back as the same double
            2,
            1,
            credit_from=2,
        ),
    ]
    tensors, index = ckpt.buffer_state(items)
    ckpt.save_tensors(tmp_path / "b.safetensors", tensors)
    ckpt.write_json_file(tmp_path / "b.json", index)
    back = ckpt.buffer_from_state(
        ckpt.load_tensors(tmp_path / "b.safetensors"), ckpt.read_json_file(tmp_path / "b.json")
    )
    assert len(back) == 2
    for a, b in zip(items, back, strict=True):
        assert torch.equal(a.prompt_ids, b.prompt_ids)
        assert torch.equal(a.completion_ids, b.completion_ids)
        for x, y in ((a.old_logprobs, b.old_logprobs), (a.ref_logprobs, b.ref_logprobs)):
            assert (x is None and y is None) or torch.equal(x, y)
        assert (a.advantage, a.iteration, a.group, a.credit_from) == (
            b.advantage,
            b.iteration,
            b.group,
            b.credit_from,
        )
    empty, index = ckpt.buffer_state([])
    assert ckpt.buffer_from_state(empty, index) == []
    older = [row[:7] for row in ckpt.buffer_state(items)[1]]  # written before grpo.blame
    assert [e.credit_from for e in ckpt.buffer_from_state(tensors, older)] == [0, 0]


def _fill(tmp: Path) -> None:
    ckpt.save_tensors(tmp / "x.safetensors", {"w": torch.arange(4.0)})
    ckpt.write_json_file(tmp / "sub" / "state.json", {"a": 1})


def test_write_checkpoint_is_atomic_checksummed_and_keeps_the_newest(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    for it in (1, 2, 3):
        path = ckpt.write_checkpoint(root, it, _fill, keep=2)
    assert path == root / "checkpoint-000003"
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["checkpoint-000002", path.name]
    manifest = json.loads((path / ckpt.MANIFEST).read_text())
    assert set(manifest["files"]) == {"x.safetensors", "sub/state.json"}
    ckpt.verify_checkpoint(path)
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


def test_full_disk_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "checkpoints"
    first = ckpt.write_checkpoint(root, 1, _fill, keep=2)

    def full(path, tensors):  # the disk fills up in the middle of the next save
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt, "save_tensors", full)
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.write_checkpoint(root, 2, _fill, keep=2)
    message = str(info.value)
    assert "\n" not in message
    assert "No space left on device" in message and f"previous checkpoint {first}" in message
    assert ckpt.list_checkpoints(root) == [first]
    ckpt.verify_checkpoint(first)
    assert [p.name for p in root.iterdir()] == [first.name]  # no temporary folder left


def test_a_safetensors_write_error_is_a_checkpoint_error(tmp_path: Path, monkeypatch) -> None:
    # safetensors (and HF save_pretrained through it) reports a full disk as SafetensorError
    from safetensors import SafetensorError

    def full(path, tensors):
        raise SafetensorError("Error while serializing: IoError(Os { kind: StorageFull })")

    monkeypatch.setattr(ckpt, "save_tensors", full)
    with pytest.raises(ckpt.CheckpointError, match="StorageFull.*; none was saved"):
        ckpt.write_checkpoint(tmp_path / "checkpoints", 1, _fill, keep=2)
    assert not list((tmp_path / "checkpoints").iterdir())


def test_damaged_and_half_written_checkpoints_are_never_picked(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    good = ckpt.write_checkpoint(root, 1, _fill, keep=5)
    bad = ckpt.write_checkpoint(root, 2, _fill, keep=5)
    (bad / "x.safetensors").write_bytes(b"corrupted")  # a flipped disk block
    (root / "checkpoint-000003").mkdir()  # no manifest: never completed
    (root / ".tmp-checkpoint-000004-abc").mkdir()  # killed mid-write
    assert ckpt.latest_checkpoint(root) == bad  # complete by its manifest …
    assert ckpt.newest_valid_checkpoint(root) == good  # … but its checksum fails
    ckpt.remove_temporary(root)
    assert not (root / ".tmp-checkpoint-000004-abc").exists()


def test_truncate_lines(tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"a": 1}\n{"a": 2}\n{"a": 3}\n')
    assert ckpt.count_lines(log) == 3
    ckpt.truncate_lines(log, 2)
    assert log.read_text() == '{"a": 1}\n{"a": 2}\n'


def test_signals_set_a_flag_then_stop_at_once_and_handlers_come_back() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with ckpt.stop_on_signals() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signal == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):  # a second signal: stop now
            os.kill(os.getpid(), signal.SIGINT)
    assert {s: signal.getsignal(s) for s in before} == before


def test_config_differences_ignore_what_a_resume_may_change() -> None:
    saved = {"num_iterations": 5, "eval": {"every": 2}, "grpo": {"beta": 0.04, "mu": 1}}
    now = {"num_iterations": 9, "eval": {"every": 3}, "grpo": {"beta": 0.0, "mu": 1}}
    assert config_differences(saved, now) == [("grpo.beta", 0.04, 0.0)]
