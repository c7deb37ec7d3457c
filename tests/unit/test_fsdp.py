"""FSDP launch checks and the single-process behaviour of fsdp.py (the sharded behaviour runs
in 2 gloo processes: tests/integration/test_distributed.py, `pytest -m slow`)."""

from __future__ import annotations

import os

import pytest
import torch

from smarttuner import fsdp
from smarttuner.distributed import DistributedError, check_fsdp_launch, init_distributed


@pytest.fixture
def launched(monkeypatch):
    """Environment of a 2-process accelerate launch with an FSDP config."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "true")
    return monkeypatch


def test_fsdp2_launch_is_accepted_and_loads_weights_everywhere(launched) -> None:
    check_fsdp_launch()
    assert os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "false"


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("FSDP_VERSION", "1", "FSDP version 1 is not supported: set fsdp_version: 2"),
        ("FSDP_OFFLOAD_PARAMS", "true", "parameter offloading is not supported"),
    ],
)
def test_unsupported_fsdp_settings_are_refused(launched, var, value, message) -> None:
    launched.setenv(var, value)
    with pytest.raises(DistributedError, match=message):
        init_distributed()


def test_deepspeed_is_refused_with_the_alternatives(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(
        DistributedError,
        match="DeepSpeed launches are not supported: use configs/accelerate/fsdp.yaml",
    ):
        init_distributed()


@pytest.mark.parametrize(
    ("engine", "four_bit", "message"), [("vllm", False, "vLLM"), ("fast", True, "4 bits")]
)
def test_fsdp_refuses_vllm_and_4bit(engine, four_bit, message) -> None:
    with pytest.raises(DistributedError, match=message):
        fsdp.check_config(engine, four_bit)
    fsdp.check_config("fast", False)


def test_helpers_are_no_ops_on_a_plain_model(tiny_model) -> None:
    assert not fsdp.is_sharded(tiny_model)
    with fsdp.full_weights(tiny_model):
        pass
    fsdp.set_gradient_sync(tiny_model, False)
    grad = torch.ones(3)
    assert fsdp.local(grad) is grad
    param = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    restored = fsdp.like_param(param, torch.ones(3))
    assert restored.dtype == torch.float64 and torch.equal(
        restored, torch.ones(3, dtype=torch.float64)
    )
    assert fsdp.full_norm(torch.tensor(2.5)) == 2.5


def test_zero_backward_adds_nothing(tiny_model) -> None:
    tiny_model.zero_grad()
    fsdp.zero_backward(tiny_model, pad_id=0)
    grads = [p.grad for p in tiny_model.parameters() if p.grad is not None]
    assert grads and all(torch.count_nonzero(g) == 0 for g in grads)
