"""Everything a person looks at, drawn from one real short run of the tiny model: every figure
(files exist, are PNGs, hold the right number of series), the TensorBoard event files and the
HTML report (sections, embedded figures, escaped completions). The live figure is tested in
`test_live_plot.py`."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import smarttuner.grpo.trainer as grpo_trainer
from smarttuner.cli import app
from smarttuner.config import GRPOConfig, SFTConfig, build_config
from smarttuner.plots import (
    build_run_figures,
    plot_comparison,
    plot_run,
    plot_runs_overlay,
    read_metrics,
)
from smarttuner.report import build_report, find_runs, run_stages, write_report
from smarttuner.sft import train_sft
from smarttuner.tracking import Tracker

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ITERATIONS = 3
GROUP = 4  # completions per prompt
PROMPTS = 2  # prompts per iteration
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
    "before_after.png",
}
SFT_FIGURES = {"sft_loss.png", "sft_val_metrics.png", "sft_lr.png"}
SPREAD_REWARD = """
def text_length(prompts, completions, **kwargs):
    return [len(c) / 50.0 for c in completions]
"""


@pytest.fixture(scope="module")
def real_run(tiny_model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline-shaped folder from real runs: sft/ (2 epochs) and grpo/ (3 iterations, with
    TensorBoard on), plus the pipeline's results.json (baseline, after SFT, final)."""
    root = tmp_path_factory.mktemp("real-run")
    (root / "rewards_mod").mkdir()
    (root / "rewards_mod" / "spread_rewards.py").write_text(textwrap.dedent(SPREAD_REWARD))
    sft_cfg = build_config(
        SFTConfig,
        None,
        {
            "model.name": tiny_model_dir,
            "task.name": "arithmetic",
            "output_dir": str(root / "sft"),
            "sft.num_datapoints": 8,
            "sft.num_epochs": 2,
            "sft.batch_size": 4,
            "sft.val_eval_examples": 2,
            "sft.max_new_tokens": 6,
            "eval.num_examples": 4,
        },
    )
    train_sft(sft_cfg)
    grpo_cfg = build_config(
        GRPOConfig,
        None,
        {
            "model.name": tiny_model_dir,
            "task.name": "arithmetic",
            "num_iterations": ITERATIONS,
            "grpo.exploration_batchsize": PROMPTS,
            "grpo.num_generations": GROUP,
            "optim.batch_size": 4,
            "optim.gradient_accumulation_steps": 1,
            "optim.learning_rate": 1e-2,
            "generation.max_new_tokens": 8,
            "eval.num_examples": 2,
            "output_dir": str(root / "grpo"),
            "rewards": [
                {"name": "correctness", "weight": 0.85},
                {"name": "format", "weight": 0.15},
                {"name": "spread_rewards:text_length", "weight": 1.0},
            ],
        },
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root / "rewards_mod"))
        # what the lead's `report_to` wiring will do: the trainer's tracker also writes TB files
        mp.setattr(
            grpo_trainer, "Tracker", lambda out, *_, **kw: Tracker(out, ["tensorboard"], **kw)
        )
        results = grpo_trainer.train_grpo(grpo_cfg)
    summary = {
        "model": "tiny",
        "task": "arithmetic",
        "baseline": results["baseline"],
        "after_sft": results["baseline"],
        "final": results["final"],
    }
    (root / "results.json").write_text(json.dumps(summary))
    plot_run(root / "sft")  # as the pipeline does; the tests below check these figures
    plot_run(root / "grpo")
    return root


def _assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC


def _labels(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines()]


def test_every_grpo_figure_from_a_real_run(real_run: Path) -> None:
    run = real_run / "grpo"
    paths = sorted((run / "plots").iterdir())
    assert {p.name for p in paths} == GRPO_FIGURES
    for path in paths:
        _assert_png(path)

    figures = build_run_figures(read_metrics(run / "metrics.jsonl"))
    (reward,) = figures["grpo_reward.png"].axes
    assert _labels(reward) == ["reward mean"] and len(reward.collections) == 1  # ± std band
    assert len(reward.get_lines()[0].get_xdata()) == ITERATIONS
    (components,) = figures["grpo_reward_components.png"].axes
    assert _labels(components) == ["correctness", "format", "spread_rewards.text_length"]
    assert len(components.collections) == 3  # one std band per component
    accuracy, format_rate = figures["grpo_accuracy.png"].axes
    # the real run evaluates on so few prompts that they have few distinct answers: balanced too
    assert _labels(accuracy) == ["train batch", "eval", "eval (balanced)"]
    assert list(accuracy.get_lines()[1].get_xdata()) == [0, ITERATIONS]  # baseline and final
    assert _labels(format_rate) == ["train batch", "eval"]
    for name in ("grpo_reward_hist.png", "grpo_advantage_hist.png"):
        (hist,) = figures[name].axes
        assert len(hist.get_legend().get_texts()) == 2  # early and late steps
    assert _labels(figures["grpo_loss.png"].axes[0]) == ["loss", "policy loss"]
    assert _labels(figures["grpo_kl.png"].axes[0]) == ["kl"]
    assert _labels(figures["grpo_clip_fraction.png"].axes[0]) == ["clip fraction"]
    length, truncated = figures["grpo_completion_length.png"].axes
    assert _labels(length) == ["completion length"]
    assert _labels(truncated) == ["truncated fraction"]
    assert _labels(figures["grpo_zero_std_fraction.png"].axes[0]) == ["zero std fraction"]
    grad, lr = figures["grpo_optimizer.png"].axes
    assert _labels(grad) == ["grad norm"] and _labels(lr) == ["lr"]


def test_every_sft_figure_from_a_real_run(real_run: Path) -> None:
    paths = sorted((real_run / "sft" / "plots").iterdir())
    assert {p.name for p in paths} == SFT_FIGURES
    for path in paths:
        _assert_png(path)
    figures = build_run_figures(read_metrics(real_run / "sft" / "metrics.jsonl"))
    (loss,) = figures["sft_loss.png"].axes
    assert _labels(loss) == ["train loss", "val loss"]
    assert len(loss.get_lines()[0].get_xdata()) == 2  # one point per epoch
    assert _labels(figures["sft_val_metrics.png"].axes[0]) == ["val accuracy", "val format rate"]
    assert _labels(figures["sft_lr.png"].axes[0]) == ["lr"]


def test_comparison_figures_from_real_results(real_run: Path, tmp_path: Path) -> None:
    files = [real_run / "results.json", real_run / "grpo" / "results.json"]
    out = plot_comparison(files, tmp_path / "cmp.png")
    _assert_png(out)
    overlay = plot_runs_overlay([real_run / "grpo", real_run / "grpo"], tmp_path / "runs.png")
    _assert_png(overlay)


def test_tensorboard_event_files_are_readable(real_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = real_run / "grpo" / "tensorboard"
    assert list(logdir.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("grpo/loss", "grpo/reward_mean", "grpo/kl", "grpo/reward/format_mean"):
        assert tag in tags["scalars"], tag
        assert [e.step for e in events.Scalars(tag)] == list(range(1, ITERATIONS + 1))
    assert [e.step for e in events.Scalars("eval/accuracy")] == [0, ITERATIONS]
    assert "grpo/step" not in tags["scalars"] and "grpo/phase" not in tags["scalars"]
    assert {"grpo/rewards", "grpo/advantages"} <= set(tags["histograms"])
    first = events.Histograms("grpo/rewards")[0].histogram_value
    assert first.num == PROMPTS * GROUP
    logged = [json.loads(line) for line in (real_run / "grpo" / "metrics.jsonl").open()]
    loss = [r["loss"] for r in logged if r["phase"] == "grpo"]
    assert [e.value for e in events.Scalars("grpo/loss")] == pytest.approx(loss, rel=1e-6)
    assert "completions/text_summary" in tags["tensors"]


def test_report_holds_every_section(real_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "grpo"
    shutil.copytree(real_run / "grpo", run, ignore=shutil.ignore_patterns("plots"))
    out = write_report(run)
    assert out == run / "report.html"
    page = out.read_text()
    for anchor in ("results", "health", "plots", "completions", "config"):
        assert f'id="{anchor}"' in page
    assert page.count("data:image/png;base64,") == len(GRPO_FIGURES)  # drawn on the fly
    assert (run / "plots" / "grpo_reward.png").is_file()
    rows = [json.loads(line) for line in (run / "completions.jsonl").open()]
    assert len(rows) == ITERATIONS * PROMPTS * GROUP
    assert page.count('<tr class="sample"') == len(rows)
    assert page.count('<tbody class="group"') == ITERATIONS * PROMPTS
    assert '<option value="3" selected>' in page  # the last step is shown first
    assert "<th>spread_rewards:text_length</th>" in page
    assert "num_iterations: 3" in page  # the resolved config
    assert "http://" not in page and "https://" not in page  # no external assets


def test_report_escapes_model_text(real_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "grpo"
    shutil.copytree(real_run / "grpo", run)
    evil: dict[str, Any] = {
        "step": 99,
        "prompt": "<|im_start|>user\nIs 1 < 2 & 3 > 2?<|im_end|>",
        "completion": '<script>alert("x")</script><img src=x onerror=alert(1)>',
        "gold": "<b>yes</b>",
        "reward": 0.5,
        "advantage": 1.0,
        "components": {"format": None},
    }
    with (run / "completions.jsonl").open("a") as fh:
        fh.write(json.dumps(evil) + "\n")
    page = build_report(run)
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>yes</b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;b&gt;yes&lt;/b&gt;" in page and "Is 1 &lt; 2 &amp; 3 &gt; 2?" in page
    assert page.count("<script>") == 1  # only the page's own browser script


def test_pipeline_report_covers_sft_and_grpo(real_run: Path, tmp_path: Path) -> None:
    assert run_stages(real_run) == [real_run / "sft", real_run / "grpo"]
    assert find_runs(real_run) == [real_run / "grpo", real_run / "sft"]
    result = CliRunner().invoke(app, ["report", str(real_run), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r.html").read_text()
    assert "<h3>sft</h3>" in page and "<h3>grpo</h3>" in page
    assert page.count("data:image/png;base64,") == len(GRPO_FIGURES) + len(SFT_FIGURES)
    assert "<th>after SFT</th>" in page and "<th>change</th>" in page


def test_report_and_plot_commands_fail_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    for args in (["report", str(tmp_path / "nothing")], ["plot", str(tmp_path / "nothing")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), result.output


def test_plot_command_modes(real_run: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    root = tmp_path / "runs"
    for name in ("a", "b"):
        shutil.copytree(
            real_run / "sft", root / name / "sft", ignore=shutil.ignore_patterns("*.png")
        )
    result = runner.invoke(app, ["plot", "--all", str(root)])
    assert result.exit_code == 0, result.output
    for name in ("a", "b"):
        assert {p.name for p in (root / name / "sft" / "plots").iterdir()} == SFT_FIGURES
    files = [str(real_run / "results.json"), str(real_run / "grpo" / "results.json")]
    out = tmp_path / "cmp.png"
    result = runner.invoke(app, ["plot", "--compare", *files, "-o", str(out)])
    assert result.exit_code == 0, result.output
    _assert_png(out)


def test_plot_without_arguments_lists_runs_and_asks(
    real_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("first", "second"):
        shutil.copytree(
            real_run / "sft", tmp_path / "runs" / name, ignore=shutil.ignore_patterns("plots")
        )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["plot"], input="1\n")
    assert result.exit_code == 0, result.output
    assert "1  runs/first" in result.output and "2  runs/second" in result.output
    assert (tmp_path / "runs" / "first" / "plots" / "sft_loss.png").is_file()
    assert not (tmp_path / "runs" / "second" / "plots").exists()
