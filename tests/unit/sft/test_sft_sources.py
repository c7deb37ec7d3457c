"""The SFT source registry and the programmatic traces."""

from __future__ import annotations

import pytest

from smarttuner.config import SFTSettings
from smarttuner.formatting import format_ok
from smarttuner.sft.sources import SourceContext, make_records, register_source
from smarttuner.sft.traces import programmatic_records
from smarttuner.tasks import get_task


@pytest.mark.parametrize("task_name", ["syllogism", "arithmetic"])
def test_programmatic_traces_are_formatted_and_correct(task_name: str) -> None:
    task = get_task(task_name)
    examples = task.examples(seed=3, n=60)
    records = programmatic_records(task_name, examples)
    assert len(records) == len(examples)
    for record, example in zip(records, examples, strict=True):
        assert record.question == example.question
        assert record.source == "programmatic"
        assert format_ok(record.completion), record.completion
        assert task.is_correct(record.completion, example), record.completion


def test_all_four_sources_are_registered_and_names_are_unique() -> None:
    task = get_task("arithmetic")
    ctx = SourceContext(task, "arithmetic", task.examples(0, 2), SFTSettings())
    assert make_records("programmatic", ctx).report == {"source": "programmatic", "made": 2}
    with pytest.raises(ValueError, match="jsonl, programmatic, self_distill, teacher"):
        make_records("nope", ctx)
    with pytest.raises(ValueError, match="already registered"):
        register_source("teacher")(lambda c: None)
