"""Which autocast a run uses: bf16 only where the CPU multiplies it natively."""

from __future__ import annotations

import logging

import pytest

from smarttuner import precision
from smarttuner.config import ModelConfig
from smarttuner.evaluate.harness import EvalOptions
from smarttuner.precision import resolve_autocast


@pytest.mark.parametrize(
    ("setting", "device", "fast", "expected"),
    [
        ("auto", "cpu", True, "bfloat16"),
        ("auto", "cpu", False, "none"),
        ("auto", "cuda", True, "none"),  # GPU weights are already bf16/fp16 (dtype auto)
        ("auto", "mps", False, "none"),
        ("none", "cpu", True, "none"),
        ("bfloat16", "cpu", False, "bfloat16"),  # an explicit choice is kept (with a warning)
        ("float16", "cpu", False, "float16"),
        ("bfloat16", "cuda", False, "bfloat16"),
    ],
)
def test_resolve_autocast(setting: str, device: str, fast: bool, expected: str) -> None:
    assert resolve_autocast(setting, device, fast_bf16=fast) == expected


def test_bf16_on_a_cpu_without_it_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    precision._warn_slow_bf16.cache_clear()
    with caplog.at_level(logging.WARNING, logger="smarttuner.precision"):
        resolve_autocast("bfloat16", "cpu", fast_bf16=False)
        resolve_autocast("bfloat16", "cpu", fast_bf16=False)
        resolve_autocast("bfloat16", "cpu", fast_bf16=True)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "without native bf16" in warnings[0] and "model.autocast=auto" in warnings[0]


@pytest.mark.parametrize("fast", [True, False])
def test_configs_and_eval_options_hold_the_resolved_autocast(
    monkeypatch: pytest.MonkeyPatch, fast: bool
) -> None:
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: fast)
    expected = "bfloat16" if fast else "none"
    assert ModelConfig(device="cpu", autocast="auto").autocast == expected
    assert ModelConfig(device="cpu").autocast == "none"  # the default stays float32
    assert ModelConfig(device="cuda", autocast="auto").autocast == "none"
    assert EvalOptions(device="cpu", autocast="auto").autocast == expected
    cfg = ModelConfig(device="cpu")
    cfg.autocast = "auto"  # assignment is validated too (a -s override)
    assert cfg.autocast == expected


def test_auto_says_what_it_chose(caplog: pytest.LogCaptureFixture) -> None:
    precision._say_auto.cache_clear()
    with caplog.at_level(logging.INFO, logger="smarttuner.precision"):
        resolve_autocast("auto", "cpu", fast_bf16=False)
        resolve_autocast("auto", "cpu", fast_bf16=False)  # once per outcome, not per config
        resolve_autocast("auto", "cpu", fast_bf16=True)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "autocast auto: float32 (this CPU has no native bf16: no AVX512-BF16 or AMX)",
        "autocast auto: bfloat16 (this CPU multiplies bf16 natively)",
    ]
