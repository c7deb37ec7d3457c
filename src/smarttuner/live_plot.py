"""The live figure of a GRPO run: a window of training curves redrawn while training runs.

What `--show-plots` uses: `LivePlot` is a step callback that opens a pyplot window on the first
GRPO step and redraws it with `draw_live`. Unlike the static figures of `smarttuner.plots`,
this needs pyplot and an interactive backend; `interactive_backend` finds one or reports a
headless machine, and then the callback warns once and does nothing. matplotlib is imported
inside the functions that draw, so importing this module costs nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from smarttuner.plots import Record, _label, _marker, _phase, _rows, _series, _style

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

_LIVE_PANELS = (
    ("reward", ("reward_mean",)),
    ("rate", ("accuracy", "format_rate")),
    ("loss", ("loss",)),
    ("KL", ("kl",)),
)


def draw_live(fig: Figure, records: list[Record]) -> None:
    """Redraw the 2×2 live panels (reward ± std, accuracy and format rate, loss, KL) on `fig`."""
    grpo = _phase(records, "grpo")
    fig.clear()
    axes = fig.subplots(2, 2, squeeze=False).ravel().tolist()
    for ax, (ylabel, keys) in zip(axes, _LIVE_PANELS, strict=True):
        for key in keys:
            xs, ys = _series(grpo, key)
            if xs:
                ax.plot(xs, ys, marker=_marker(len(xs)), markersize=3, label=_label(key))
        if ylabel == "reward":
            band = _rows(grpo, "reward_mean", "reward_std")
            if band:
                ax.fill_between(
                    [r[0] for r in band],
                    [m - s for _, m, s in band],
                    [m + s for _, m, s in band],
                    alpha=0.2,
                )
        if ylabel == "rate":
            ax.set_ylim(-0.02, 1.02)
        _style(ax, ylabel)
    last = grpo[-1].get("step", "?") if grpo else "-"
    fig.suptitle(f"GRPO live · step {last}")


def interactive_backend() -> str | None:
    """The matplotlib backend that can open a window here, or None on a headless machine.

    Never raises: a broken GUI toolkit counts as headless. Imports pyplot (only call this when
    a window is wanted)."""
    import os
    import sys

    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return None
    try:
        import matplotlib
        import matplotlib.pyplot  # noqa: F401  (resolves the backend, falling back to Agg)
        from matplotlib.backends import BackendFilter, backend_registry

        backend = matplotlib.get_backend()
        interactive = {b.lower() for b in backend_registry.list_builtin(BackendFilter.INTERACTIVE)}
    except Exception as error:
        logger.debug("no interactive matplotlib backend: %s", error)
        return None
    return backend if backend.lower() in interactive else None


class LivePlot:
    """A step callback (`live(step, record)`) that keeps a window of live training curves.

    Opens the window on the first GRPO step when a GUI backend is usable; on a headless machine
    (or when the window cannot be drawn) it warns once and does nothing from then on, so a run
    with `--show-plots` never crashes for want of a display. `every` redraws every N steps.
    """

    def __init__(self, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"LivePlot every must be >= 1, got {every}.")
        self.every = every
        self.records: list[Record] = []
        self.enabled = True
        self._fig: Figure | None = None
        self._plt: Any = None

    def __call__(self, step: int, record: Record) -> None:
        self.records.append(record)
        if not self.enabled or record.get("phase") != "grpo" or step % self.every:
            return
        try:
            if self._fig is None:
                self._open()
            if self._fig is not None:
                draw_live(self._fig, self.records)
                self._fig.canvas.draw_idle()
                self._plt.pause(0.001)
        except Exception as error:  # a live figure must never cost the run
            self._disable(f"the live figure failed ({error})")

    def _open(self) -> None:
        backend = interactive_backend()
        if backend is None:
            self._disable("no display or GUI backend for --show-plots (headless machine)")
            return
        import matplotlib.pyplot as plt

        self._plt = plt
        plt.ion()
        self._fig = plt.figure("SmartTuner — GRPO", figsize=(10, 6), layout="tight")
        plt.show(block=False)

    def _disable(self, reason: str) -> None:
        logger.warning("%s; continuing without live plots", reason)
        self.enabled = False

    def close(self) -> None:
        """Stop updating; the window stays until the user closes it (or the process ends)."""
        if self._plt is not None:
            self._plt.ioff()
        self.enabled = False
