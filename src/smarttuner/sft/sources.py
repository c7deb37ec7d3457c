"""SFT data sources, chosen by `sft.source`. Each returns records plus a small report
(how many were asked for, made, accepted) that the run logs.

The sources' work lives in their own modules (`traces`, `distill`, `teacher`, `jsonl`) as
functions of plain arguments; the registered functions here only unpack the context."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smarttuner.config import SFTSettings
from smarttuner.registry import Registry
from smarttuner.sft.distill import self_distill_records
from smarttuner.sft.jsonl import jsonl_records
from smarttuner.sft.records import SFTRecord
from smarttuner.sft.teacher import teacher_records
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
_SOURCES: Registry[Source] = Registry("SFT source")
register_source = _SOURCES.register


@register_source("programmatic")
def programmatic_source(ctx: SourceContext) -> SourceResult:
    records = programmatic_records(ctx.task_name, ctx.examples)
    return SourceResult(records, {"source": "programmatic", "made": len(records)})


@register_source("self_distill")
def self_distill_source(ctx: SourceContext) -> SourceResult:
    """The model's own samples under a format-teaching prompt, kept when verified correct."""
    records, report = self_distill_records(
        ctx.model, ctx.tokenizer, ctx.task, ctx.examples, ctx.settings, seed=ctx.seed
    )
    return SourceResult(records, report)


@register_source("teacher")
def teacher_source(ctx: SourceContext) -> SourceResult:
    """Verified replies of an OpenAI-compatible chat endpoint, cached under `ctx.cache_dir`."""
    records, report = teacher_records(ctx.task, ctx.examples, ctx.settings.teacher, ctx.cache_dir)
    return SourceResult(records, report)


@register_source("jsonl")
def jsonl_source(ctx: SourceContext) -> SourceResult:
    """The first `num_datapoints` rows of the user's JSONL file at `settings.path`."""
    records, report = jsonl_records(ctx.settings.path, ctx.settings.num_datapoints)
    return SourceResult(records, report)


def make_records(name: str, ctx: SourceContext) -> SourceResult:
    return _SOURCES[name](ctx)
