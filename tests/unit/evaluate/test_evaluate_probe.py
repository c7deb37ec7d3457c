"""The probe's advice on SFT warm-up, and how the pipeline's `run_sft` setting words it."""

from __future__ import annotations

import pytest

from smarttuner.evaluate.probe import ProbeResult, needs_warmup, sft_decision


def _probe(format_rate: float, variance: float) -> ProbeResult:
    return ProbeResult(
        format_rate=format_rate,
        pass_at_1=0.1,
        pass_at_k=0.3,
        k=4,
        mixed_fraction=variance,
        reward_variance_fraction=variance,
        n_prompts=8,
    )


def test_needs_warmup_names_the_failing_check() -> None:
    warm, reason = needs_warmup(_probe(0.2, 0.9), min_format_rate=0.5, min_signal=0.25)
    assert warm and "format rate 20% < 50%" in reason
    warm, reason = needs_warmup(_probe(0.9, 0.1), min_format_rate=0.5, min_signal=0.25)
    assert warm and "only 10% of prompts have reward variance" in reason
    warm, reason = needs_warmup(_probe(0.9, 0.5), min_format_rate=0.5, min_signal=0.25)
    assert not warm and "GRPO can start directly" in reason


@pytest.mark.parametrize(
    ("run_sft", "warm", "runs", "overrides"),
    [
        ("auto", True, True, False),
        ("auto", False, False, False),
        ("always", True, True, False),
        ("always", False, True, True),
        ("never", False, False, False),
        ("never", True, False, True),
    ],
)
def test_sft_decision_says_when_the_setting_overrules_the_probe(
    run_sft: str, warm: bool, runs: bool, overrides: bool
) -> None:
    do_sft, line = sft_decision(run_sft, warm, "the probe's reason")
    assert do_sft is runs
    assert line.startswith("running SFT" if runs else "skipping SFT")
    assert line.endswith(": the probe's reason")
    assert ("overriding the probe" in line) is overrides
