"""Keep freed memory inside the process on Linux/glibc instead of handing it back each time.

A GRPO step on a CPU allocates and frees the same large activation and gradient buffers
hundreds of times. glibc serves every allocation above its mmap threshold (adaptive, at most
32 MB) with fresh pages from the kernel and unmaps them on free, so each reuse pays page
faults and page zeroing in the kernel: ~15 s of system CPU in a ~53 s bf16 step of
`smarttuner bench`'s configuration on the 2-core machine here. Raising the mmap and trim
thresholds lets freed blocks be reused from the heap. In an ad-hoc A/B of that step
(alternating processes, same completions) the step took 53.2 / 54.0 s without and
49.6 / 49.5 s with it, system CPU ~15 s against ~10 s, peak RSS unchanged. `smarttuner bench`
runs TRL with the stock settings (see `bench/run.py`).

`SMARTTUNER_KEEP_FREED_MEMORY=0` turns it off. Other C libraries (musl, macOS, Windows) are
left alone.

Kept memory only pays within a phase that allocates the same sizes again. Between phases
(training → evaluation, one pipeline stage → the next) `release_freed_memory` hands the free
heap pages back (glibc's `malloc_trim(0)`), so that the next phase's differently sized
buffers do not come on top of a fragmented heap of the last one's.

Within a phase whose steps change shape (SFT batches padded to their longest trace), the kept
heap still fragments: a freed block is reused only by a request it can hold, so each new
shape can take fresh pages. In a 1,400-trace gsm_symbolic SFT run the process grew to
18-20 GB although one step of the longest batch needs ~8 GB. `HeapGrowthGuard` hands the free
pages back when the RSS after a step has grown by a factor over the RSS after the first step
since the last hand-back: steps of like shapes keep reusing, a ratchet is cut off.
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
from collections.abc import Callable

from smarttuner.memory import rss_mb

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 30  # blocks below 1 GiB come from the heap and are reused
TRIM_THRESHOLD_BYTES = 2 << 30  # keep up to 2 GiB of free heap top before returning it
ENV_SWITCH = "SMARTTUNER_KEEP_FREED_MEMORY"

_applied = False


def applied() -> bool:
    """Whether this process runs with the raised thresholds."""
    return _applied


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def release_freed_memory() -> bool:
    """Collect Python's garbage (tensors held in reference cycles), then return the C heap's
    free pages to the kernel (glibc only). True if any went back."""
    gc.collect()
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))


def keep_freed_memory() -> bool:
    """Raise glibc's mmap/trim thresholds once per process. True if they are in effect."""
    global _applied
    if _applied:
        return True
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    libc = _glibc()
    if libc is None:
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and ok
    _applied = ok
    return ok


class HeapGrowthGuard:
    """Call `after_step()` after every training step: it hands freed memory back
    (`release_freed_memory`) when the RSS has grown more than `factor` times the RSS after the
    first step since the last hand-back (or since the start), and says whether it did."""

    def __init__(
        self,
        factor: float = 1.25,
        read_rss: Callable[[], float | None] = rss_mb,
        release: Callable[[], bool] = release_freed_memory,
    ) -> None:
        if factor <= 1.0:
            raise ValueError(f"HeapGrowthGuard factor must be > 1, got {factor}")
        self.factor, self._read, self._release = factor, read_rss, release
        self.base: float | None = None
        self.releases = 0

    def after_step(self) -> bool:
        now = self._read()
        if now is None:  # no /proc: nothing to go by
            return False
        if self.base is None:
            self.base = now
            return False
        if now <= self.factor * self.base:
            return False
        self._release()
        self.base, self.releases = None, self.releases + 1
        return True
