"""The live figure of `--show-plots`, drawn headless from synthetic metrics records; no model
and no window are involved."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import smarttuner.live_plot as live_plot
from smarttuner.live_plot import LivePlot, draw_live

STEPS = 3


def _records() -> list[dict[str, Any]]:
    """What a GRPO run logs: a baseline eval, one line per step, a final eval."""
    lines: list[dict[str, Any]] = [{"phase": "eval", "step": 0, "accuracy": 0.1}]
    lines += [
        {
            "phase": "grpo",
            "step": step,
            "loss": 0.5 - 0.1 * step,
            "kl": 0.01 * step,
            "reward_mean": 0.2 * step,
            "reward_std": 0.1,
            "accuracy": 0.1 * step,
            "format_rate": 0.5 + 0.1 * step,
        }
        for step in range(1, STEPS + 1)
    ]
    lines.append({"phase": "eval", "step": STEPS, "accuracy": 0.4})
    return lines


def _labels(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines()]


def test_live_plot_draws_every_panel() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    FigureCanvasAgg(fig)
    draw_live(fig, _records())
    reward, rates, loss, kl = fig.axes
    assert _labels(reward) == ["reward mean"] and len(reward.collections) == 1
    assert _labels(rates) == ["accuracy", "format rate"]
    assert _labels(loss) == ["loss"] and _labels(kl) == ["kl"]
    assert len(kl.get_lines()[0].get_xdata()) == STEPS


def test_live_plot_on_a_headless_machine_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    live = LivePlot()
    with caplog.at_level(logging.WARNING, logger="smarttuner.live_plot"):
        for record in _records():
            live(int(record["step"]), record)
    assert not live.enabled and len(live.records) == STEPS + 2
    assert caplog.text.count("headless") == 1
    live.close()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_live_plot_updates_its_window(monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.pyplot as plt

    plt.switch_backend("agg")  # stands in for a GUI backend: same figure calls, no window
    monkeypatch.setattr(live_plot, "interactive_backend", lambda: "agg")
    live = LivePlot(every=2)
    for record in _records():
        live(int(record["step"]), record)
    assert live.enabled and live._fig is not None
    reward = live._fig.axes[0]
    assert len(reward.get_lines()[0].get_xdata()) == 2  # drawn at step 2 (every=2), not 3
    live.close()
    plt.close(live._fig)
