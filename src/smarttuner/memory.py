"""Resident memory (RSS) of this process: the current figure and the peak so far.

GRPO steps and SFT epochs record both, and a pipeline records its peak after each stage, so a
run shows where its memory went (a 135M model should fit a laptop)."""

from __future__ import annotations

import os
import resource
import sys

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def peak_rss_mb() -> float:
    """The largest RSS this process has had, in MiB: ru_maxrss (KiB on Linux, bytes on macOS),
    or the RSS now where the kernel has not yet folded it into ru_maxrss."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = peak / 2**20 if sys.platform == "darwin" else peak / 1024
    return max(peak, rss_mb() or 0.0)


def rss_mb() -> float | None:
    """The RSS now, in MiB, where /proc tells it (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE / 2**20
    except (OSError, IndexError, ValueError):
        return None


def memory_record() -> dict[str, float]:
    """{"rss_mb", "peak_rss_mb"} for a step or epoch record (no "rss_mb" where unknown)."""
    now = rss_mb()
    return {**({} if now is None else {"rss_mb": now}), "peak_rss_mb": peak_rss_mb()}
