"""The plain-language health line of the progress display (also listed in the report)."""

from __future__ import annotations

import io

from rich.console import Console

from smarttuner.progress import (
    GRPOProgress,
    HealthMonitor,
    health_note,
    health_notes,
    results_table,
    sft_step_due,
    sft_step_line,
    step_line,
)

HEALTHY = {
    "phase": "grpo",
    "step": 1,
    "loss": 0.1,
    "reward_mean": 0.5,
    "reward_std": 0.2,
    "accuracy": 0.5,
    "format_rate": 0.9,
    "kl": 0.01,
    "clip_fraction": 0.05,
    "zero_std_fraction": 0.25,
    "truncated_fraction": 0.1,
    "completion_length": 40.0,
    "tokens_per_second": 100.0,
    "step_seconds": 1.0,
}


def test_a_healthy_step_has_no_note() -> None:
    assert health_notes(HEALTHY) == [] and health_note(HEALTHY) is None
    assert "⚠" not in step_line(1, HEALTHY)


def test_each_problem_is_named_in_plain_words() -> None:
    cases = {
        "zero_std_fraction": (1.0, "all groups had equal rewards: no learning signal"),
        "truncated_fraction": (0.8, "completions truncated at max_new_tokens (80%)"),
        "kl": (2.0, "KL to the reference is large"),
        "clip_fraction": (0.5, "many tokens hit the PPO clip"),
        "format_rate": (0.0, "no completion followed the <think>/<answer> format"),
        "loss": (float("nan"), "the loss is not finite"),
    }
    for key, (value, words) in cases.items():
        notes = health_notes({**HEALTHY, key: value})
        assert len(notes) == 1 and words in notes[0], (key, notes)
    most = health_notes({**HEALTHY, "zero_std_fraction": 0.75})
    assert most == [
        "75% of groups had equal rewards: little learning signal — a higher temperature or "
        "more generations per prompt would help"
    ]
    both = health_notes({**HEALTHY, "zero_std_fraction": 1.0, "truncated_fraction": 0.9})
    assert len(both) == 2 and both[0].startswith("all groups")  # most serious first
    line = step_line(1, {**HEALTHY, "zero_std_fraction": 1.0, "truncated_fraction": 0.9})
    assert line.count("\n") == 1 and " · " in line


def test_the_step_line_shows_memory_when_the_record_has_it() -> None:
    assert "RSS" not in step_line(1, HEALTHY)
    line = step_line(1, {**HEALTHY, "rss_mb": 3174.4, "peak_rss_mb": 4300.8})
    assert line.endswith("RSS 3.1 GB (peak 4.2)")


def test_kl_rising_fast_needs_history() -> None:
    monitor = HealthMonitor()
    # KL 0.02, 0.025, 0.03, then 0.09: mean of the last (up to 5) steps before is 0.025, and
    # 0.09 >= 2 x 0.025 with 0.09 above the 0.05 floor -> rising fast
    for step, kl in enumerate((0.02, 0.025, 0.03), start=1):
        assert monitor.check({**HEALTHY, "step": step, "kl": kl}) == []
    notes = monitor.check({**HEALTHY, "step": 4, "kl": 0.09})
    assert notes == [
        "KL rising fast (0.025 → 0.090 over the last 3 steps) — lower the learning rate or "
        "raise beta"
    ]
    # the same jump without history says nothing; a slow climb says nothing
    assert health_notes({**HEALTHY, "kl": 0.09}) == []
    slow = HealthMonitor()
    assert not any(slow.check({**HEALTHY, "kl": 0.05 + 0.01 * i}) for i in range(10))
    # tiny KLs doubling are noise (below the floor)
    tiny = HealthMonitor()
    assert not any(tiny.check({**HEALTHY, "kl": 0.001 * 2**i}) for i in range(5))
    # eval records neither get notes nor enter the history
    assert monitor.check({"phase": "eval", "format_rate": 0.0, "kl": 5.0}) == []
    assert list(monitor.kl_history) == [0.02, 0.025, 0.03, 0.09]


def test_progress_prints_the_health_line_with_history() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=300, force_terminal=False)
    with GRPOProgress(console, total=4) as progress:
        for step, kl in enumerate((0.02, 0.025, 0.03, 0.09), start=1):
            progress.update(step, {**HEALTHY, "step": step, "kl": kl})
    out = buffer.getvalue()
    assert out.count("KL rising fast") == 1 and "iter 4:" in out


def test_progress_says_how_many_batches_a_refilled_iteration_sampled() -> None:
    assert "batches" not in step_line(1, {**HEALTHY, "sampling_rounds": 1}, [])
    assert "3 batches" in step_line(1, {**HEALTHY, "sampling_rounds": 3}, [])


def test_results_table_shows_pass_at_k_and_change() -> None:
    results = {
        "task": "arithmetic",
        "model": "tiny",
        "baseline": {"accuracy": 0.25, "format_rate": 0.5, "mean_length": 10.0, "pass@4": 0.5},
        "final": {"accuracy": 0.75, "format_rate": 1.0, "mean_length": 12.0, "pass@4": 1.0},
        "labels": {"baseline": "base", "final": "trained"},
    }
    buffer = io.StringIO()
    Console(file=buffer, width=200).print(results_table(results))
    out = buffer.getvalue()
    assert "base" in out and "trained" in out and "pass@4" in out and "+0.500" in out


def test_sft_prints_about_twenty_step_lines_with_the_time_left() -> None:
    due = [step for step in range(1, 501) if sft_step_due(step, 500)]
    assert due[0] == 1 and due[-1] == 500 and len(due) == 21
    assert all(sft_step_due(step, 7) for step in range(1, 8))  # short runs: every step
    record = {"step": 50, "total_steps": 500, "epoch": 1, "loss": 0.41234, "elapsed_seconds": 155}
    assert sft_step_line(record) == (
        "SFT step 50/500 (epoch 1): loss 0.4123  3.1 s/step  ~23 min left of training"
    )
    end = {**record, "step": 499, "elapsed_seconds": 499 * 3.1}
    assert sft_step_line(end).endswith("~3 s left of training")
    with_memory = {**record, "rss_mb": 3.0 * 1024, "peak_rss_mb": 4.5 * 1024}
    assert sft_step_line(with_memory).endswith("of training  RSS 3.0 GB (peak 4.5)")
