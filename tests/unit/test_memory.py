"""Resident memory readings: current and peak RSS of this process."""

from __future__ import annotations

import sys

import pytest
import torch

from smarttuner.memory import memory_record, peak_rss_mb, rss_mb


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_rss_follows_a_touched_allocation_and_the_peak_keeps_it() -> None:
    before = rss_mb()
    block = torch.ones(64 * 2**20)  # 256 MiB, every page written
    during = rss_mb()
    assert during - before > 200
    slack = 1.0  # MiB: the kernel batches RSS counts per thread (64 pages), readings lag
    assert peak_rss_mb() >= during - slack
    del block
    record = memory_record()
    assert set(record) == {"rss_mb", "peak_rss_mb"}
    assert record["peak_rss_mb"] >= during - slack > 0
