"""Plots are drawn headless from a synthetic metrics.jsonl; no model is involved."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from smarttuner.plots import (
    build_run_figures,
    plot_before_after,
    plot_comparison,
    plot_run,
    read_metrics,
    smooth,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

GRPO_FIGURES = {
    "grpo_loss.png",
    "grpo_reward.png",
    "grpo_reward_components.png",
    "grpo_accuracy.png",
    "grpo_reward_hist.png",
    "grpo_advantage_hist.png",
    "grpo_kl.png",
    "grpo_clip_fraction.png",
    "grpo_completion_length.png",
    "grpo_zero_std_fraction.png",
    "grpo_optimizer.png",
}
SFT_FIGURES = {"sft_loss.png", "sft_val_metrics.png", "sft_lr.png"}


def _grpo_line(step: int) -> dict:
    return {
        "phase": "grpo",
        "step": step,
        "loss": 0.5 - 0.1 * step,
        "policy_loss": 0.4 - 0.1 * step,
        "kl": 0.01 * step,
        "clip_fraction": 0.05,
        "reward_mean": 0.2 * step,
        "reward_std": 0.1,
        "reward/correctness_mean": 0.1 * step,
        "reward/correctness_std": 0.05,
        "reward/format_mean": 0.3,
        "reward/format_std": 0.1,
        "accuracy": 0.1 * step,
        "format_rate": 0.5 + 0.1 * step,
        "zero_std_fraction": 0.25,
        "completion_length": 100.0 + step,
        "truncated_fraction": 0.1,
        "tokens_per_second": 50.0,
        "step_seconds": 2.0,
        "lr": 1e-5,
        "grad_norm": 1.0,
        "advantage_mean": 0.0,
        "advantage_std": 1.0,
        "rewards": [0.0, 1.0, 0.5 * step, 1.5],
        "advantages": [-1.0, 0.5, 0.2 * step, 1.0],
    }


def _metrics_lines() -> list[dict]:
    lines = [{"phase": "eval", "step": 0, "split": "eval", "accuracy": 0.1, "format_rate": 0.3}]
    lines += [_grpo_line(step) for step in range(1, 5)]
    lines.append({"phase": "eval", "step": 4, "split": "eval", "accuracy": 0.4, "format_rate": 0.9})
    lines += [
        {"phase": "sft", "epoch": 0.5, "step": 5, "train_loss": 2.0, "lr": 1e-4},
        {
            "phase": "sft",
            "epoch": 1,
            "step": 10,
            "train_loss": 1.5,
            "val_loss": 1.6,
            "val_accuracy": 0.2,
            "val_format_rate": 0.7,
            "lr": 5e-5,
        },
    ]
    return lines


def _write_run(run_dir: Path, lines: list[dict]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "metrics.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _results(task: str = "arithmetic", with_sft: bool = True) -> dict:
    results = {
        "model": "tiny",
        "task": task,
        "baseline": {"accuracy": 0.1, "format_rate": 0.2},
        "final": {"accuracy": 0.5, "format_rate": 0.9},
    }
    if with_sft:
        results["after_sft"] = {"accuracy": 0.3, "format_rate": 0.8}
    return results


def _assert_png(path: Path) -> None:
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_plot_run_writes_every_figure(tmp_path: Path) -> None:
    _write_run(tmp_path, _metrics_lines())
    paths = plot_run(tmp_path)
    assert {p.name for p in paths} == GRPO_FIGURES | SFT_FIGURES
    for path in paths:
        assert path.parent == tmp_path / "plots"
        _assert_png(path)


def test_plot_run_adds_before_after_when_results_exist(tmp_path: Path) -> None:
    _write_run(tmp_path, _metrics_lines())
    (tmp_path / "results.json").write_text(json.dumps(_results()))
    out_dir = tmp_path / "elsewhere"
    paths = plot_run(tmp_path, out_dir=out_dir)
    assert out_dir / "before_after.png" in paths
    _assert_png(out_dir / "before_after.png")


def test_plot_run_skips_figures_without_data(tmp_path: Path) -> None:
    sft_only = [line for line in _metrics_lines() if line["phase"] == "sft"]
    _write_run(tmp_path, sft_only)
    assert {p.name for p in plot_run(tmp_path)} == SFT_FIGURES


def test_plot_run_missing_metrics_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        plot_run(tmp_path)


def test_figures_hold_one_line_per_series() -> None:
    figures = build_run_figures(_metrics_lines())
    components = figures["grpo_reward_components.png"].axes[0]
    assert [line.get_label() for line in components.get_lines()] == ["correctness", "format"]
    assert len(figures["grpo_loss.png"].axes[0].get_lines()) == 2  # loss and policy loss
    accuracy, format_rate = figures["grpo_accuracy.png"].axes
    # Four steps are too few to smooth: one training line plus the eval markers.
    assert [line.get_label() for line in accuracy.get_lines()] == ["train batch", "eval"]
    assert list(accuracy.get_lines()[1].get_xdata()) == [0, 4]
    assert len(format_rate.get_lines()) == 2
    assert len(figures["grpo_completion_length.png"].axes) == 2
    hist = figures["grpo_reward_hist.png"].axes[0]
    assert len(hist.get_legend().get_texts()) == 2  # early and late steps


def test_sft_loss_omits_missing_points() -> None:
    figures = build_run_figures(_metrics_lines())
    train, val = figures["sft_loss.png"].axes[0].get_lines()
    assert list(train.get_xdata()) == [5, 10]
    assert list(val.get_xdata()) == [10]


def test_read_metrics_skips_blank_and_corrupt_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"phase": "grpo", "step": 1}\n\n{"phase": "gr\n[1, 2]\n{"step": 2}\n')
    with caplog.at_level(logging.WARNING, logger="smarttuner.plots"):
        records = read_metrics(path)
    assert records == [{"phase": "grpo", "step": 1}, {"step": 2}]
    assert "line 3" in caplog.text and "line 4" in caplog.text


def test_smooth_is_a_trailing_mean() -> None:
    # Window 2: [1], [1, 3], [3, 5], [5, 7] -> 1, 2, 4, 6.
    assert smooth([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert smooth([1.0, 2.0], 1) == [1.0, 2.0]
    with pytest.raises(ValueError, match="window"):
        smooth([1.0], 0)


def test_plot_comparison_draws_one_bar_per_stage(tmp_path: Path) -> None:
    files = []
    for task, with_sft in (("arithmetic", True), ("syllogism", False)):
        path = tmp_path / f"{task}.json"
        path.write_text(json.dumps(_results(task, with_sft)))
        files.append(path)
    out = plot_comparison(files, tmp_path / "cmp" / "accuracy.png")
    assert out == tmp_path / "cmp" / "accuracy.png"
    _assert_png(out)


def test_plot_comparison_rejects_unknown_metric(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_results()))
    with pytest.raises(ValueError, match="nonsense"):
        plot_comparison([path], tmp_path / "x.png", metric="nonsense")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        plot_comparison([tmp_path / "missing.json"], tmp_path / "x.png")


def test_plot_before_after(tmp_path: Path) -> None:
    out = plot_before_after(_results(with_sft=False), tmp_path / "ba.png")
    _assert_png(out)
    with pytest.raises(ValueError, match="baseline"):
        plot_before_after({"model": "tiny"}, tmp_path / "bad.png")


def test_balanced_accuracy_of_evals_is_drawn_beside_accuracy() -> None:
    lines = _metrics_lines()
    for line in lines:
        if line.get("phase") == "eval":
            line["balanced_accuracy"] = line["accuracy"] / 2
    accuracy, format_rate = build_run_figures(lines)["grpo_accuracy.png"].axes
    labels = [line.get_label() for line in accuracy.get_lines()]
    assert labels == ["train batch", "eval", "eval (balanced)"]
    assert list(accuracy.get_lines()[2].get_ydata()) == [0.05, 0.2]
    assert len(format_rate.get_lines()) == 2  # not on the format panel
