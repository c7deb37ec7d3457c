"""SFT data sources, chosen by `sft.source`. Each returns records plus a small report
(how many were asked for, made, accepted) that the run logs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smarttuner.config import SFTSettings
from smarttuner.sft.records import SFTRecord
from smarttuner.sft.traces import programmatic_records
from smarttuner.tasks.base import Example, Task

log = logging.getLogger(__name__)


@dataclass
class SourceContext:
    """What a source may use: the task, its training examples, the model, a cache dir."""

    task: Task
    task_name: str
    examples: list[Example]
    settings: SFTSettings
    model: Any = None
    tokenizer: Any = None
    cache_dir: Path | None = None
    seed: int = 0


@dataclass
class SourceResult:
    records: list[SFTRecord]
    report: dict[str, Any] = field(default_factory=dict)


Source = Callable[[SourceContext], SourceResult]
_SOURCES: dict[str, Source] = {}


def register_source(name: str) -> Callable[[Source], Source]:
    def decorator(fn: Source) -> Source:
        if name in _SOURCES:
            raise ValueError(f"SFT source {name!r} is already registered")
        _SOURCES[name] = fn
        return fn

    return decorator


@register_source("programmatic")
def programmatic_source(ctx: SourceContext) -> SourceResult:
    records = programmatic_records(ctx.task_name, ctx.examples)
    return SourceResult(records, {"source": "programmatic", "made": len(records)})


def make_records(name: str, ctx: SourceContext) -> SourceResult:
    if name not in _SOURCES:
        raise ValueError(f"unknown SFT source {name!r}; use one of {', '.join(sorted(_SOURCES))}")
    return _SOURCES[name](ctx)
