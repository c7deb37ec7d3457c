"""The benchmark's printed table."""

from __future__ import annotations

from statistics import mean
from typing import Any

from rich.table import Table


def _fmt(value: float | None, unit: str = "") -> str:
    return "—" if value is None else f"{value:.1f}{unit}"


def bench_table(results: dict[str, Any]) -> Table:
    table = Table(title="SmartTuner bench (measured in this run)")
    for col in (
        "system",
        "step s",
        "generate s",
        "logprobs s",
        "train s",
        "tokens/s",
        "peak RSS MB",
    ):
        table.add_column(col, justify="right" if col != "system" else "left", no_wrap=True)
    for kind in ("smarttuner", "smarttuner-bf16", "trl"):
        r = results.get(kind)
        if not r:
            continue
        steps = r["steps"]

        def m(key: str, steps=steps) -> float | None:
            vals = [s[key] for s in steps if key in s]
            return mean(vals) if vals else None

        table.add_row(
            kind,
            _fmt(m("step_seconds")),
            _fmt(m("time/generate")),
            _fmt(m("time/logprobs")),
            _fmt(m("time/train")),
            _fmt(m("tokens_per_second")),
            _fmt(r.get("peak_rss_mb")),
        )
    roll = results.get("rollout")
    if roll:
        for engine in [k for k in ("fast", "hf", "fast-bf16", "hf-bf16") if k in roll]:
            e = roll[engine]
            table.add_row(
                f"rollout {engine}",
                _fmt(e["seconds"]),
                "",
                "",
                "",
                _fmt(e["tokens_per_second"]),
                "",
            )
    s = results.get("summary", {})
    notes = [
        f"{k}: {v:.2f}×"
        for k, v in s.items()
        if k.endswith(("speedup_vs_trl", "per_token", "vs_generate", "vs_generate_bf16"))
    ]
    if roll:
        same = {k: v for k, v in roll.items() if k.startswith("greedy_identical")}
        notes.append("greedy tokens identical: " + ", ".join(f"{k} {v}" for k, v in same.items()))
    table.caption = "  ".join(notes)
    return table
