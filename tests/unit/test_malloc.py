"""glibc's mmap/trim thresholds are raised once per CPU process, and can be switched off."""

from __future__ import annotations

import ctypes
import platform

import pytest

from smarttuner import malloc

glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="needs glibc"
)


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(malloc, "_applied", False)
    monkeypatch.delenv(malloc.ENV_SWITCH, raising=False)


@glibc
def test_thresholds_are_set_through_mallopt(monkeypatch):
    calls = []

    class Libc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    assert malloc.keep_freed_memory()
    assert calls == [
        (malloc.M_MMAP_THRESHOLD, malloc.MMAP_THRESHOLD_BYTES),
        (malloc.M_TRIM_THRESHOLD, malloc.TRIM_THRESHOLD_BYTES),
    ]
    assert malloc.keep_freed_memory()  # once per process
    assert len(calls) == 2


@glibc
def test_real_glibc_accepts_the_thresholds():
    assert malloc.keep_freed_memory()


@pytest.mark.parametrize("value", ["0", "off", "false"])
def test_environment_switch_turns_it_off(monkeypatch, value):
    monkeypatch.setenv(malloc.ENV_SWITCH, value)
    monkeypatch.setattr(ctypes, "CDLL", lambda name: pytest.fail("mallopt must not be called"))
    assert not malloc.keep_freed_memory()


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    monkeypatch.setattr(ctypes, "CDLL", lambda name: pytest.fail("mallopt must not be called"))
    assert not malloc.keep_freed_memory()


@glibc
def test_a_refused_setting_is_reported(monkeypatch):
    class Libc:
        def mallopt(self, param, value):
            return 0

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    assert not malloc.keep_freed_memory()


@glibc
def test_release_hands_freed_heap_pages_back():
    import torch

    from smarttuner.memory import rss_mb

    malloc.keep_freed_memory()  # blocks below 1 GiB now come from the heap and stay there
    blocks = [torch.ones(2**20) for _ in range(128)]  # 128 x 4 MiB, every page written
    keep = torch.ones(1)  # allocated last: the heap cannot shrink from the top past it
    del blocks
    held = rss_mb()
    assert malloc.release_freed_memory()
    assert held - rss_mb() > 256  # most of the 512 MiB went back
    del keep


def guard_with(readings, factor=1.25):
    values, released = iter(readings), []
    guard = malloc.HeapGrowthGuard(factor, lambda: next(values), lambda: released.append(1))
    return guard, released


def test_guard_hands_memory_back_only_when_the_heap_has_grown_past_the_factor():
    # first step sets the base (8000); like-sized steps reuse; 10,500 > 1.25 x 8000 releases;
    # the next step after a release sets a new base (4000), from which 5100 is growth again
    guard, released = guard_with([8000, 9000, 10000, 10500, 4000, 4900, 5100])
    assert [guard.after_step() for _ in range(7)] == [False, False, False, True, False, False, True]
    assert len(released) == guard.releases == 2


def test_guard_does_nothing_without_an_rss_reading():
    guard, released = guard_with([None, None, None])
    assert not any(guard.after_step() for _ in range(3)) and released == [] and guard.base is None


def test_guard_refuses_a_factor_that_would_release_every_step():
    with pytest.raises(ValueError, match="factor must be > 1"):
        malloc.HeapGrowthGuard(1.0)
