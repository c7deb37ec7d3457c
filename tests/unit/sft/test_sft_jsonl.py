"""The `jsonl` SFT source: three row shapes, the row limit, and errors that name the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smarttuner.config import SFTSettings
from smarttuner.formatting import format_ok
from smarttuner.sft.jsonl import jsonl_records
from smarttuner.sft.records import format_target
from smarttuner.sft.sources import SourceContext, make_records
from smarttuner.tasks import get_task

GOOD = "<think> 2 + 2 = 4 </think><answer> 4 </answer>"


def write_rows(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def jsonl_source(path: Path | None, num_datapoints: int = 100):
    task = get_task("arithmetic")
    settings = SFTSettings(source="jsonl", path=path, num_datapoints=num_datapoints)
    return make_records("jsonl", SourceContext(task, "arithmetic", [], settings))


def test_three_row_shapes_become_records(tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "data.jsonl",
        [
            {"question": "What is 2 + 2?", "reasoning": "2 + 2 = 4", "answer": 4},
            "",  # blank lines are skipped
            {"question": "What is 2 + 2?", "completion": GOOD},
            {
                "messages": [
                    {"role": "system", "content": "ignored"},
                    {"role": "user", "content": "first"},
                    {"role": "assistant", "content": "no tags"},
                    {"role": "user", "content": "What is 3 + 3?"},
                    {
                        "role": "assistant",
                        "content": [{"type": "text", "text": "6, no tags either"}],
                    },
                ]
            },
        ],
    )
    result = jsonl_source(path)
    questions = [r.question for r in result.records]
    assert questions == ["What is 2 + 2?", "What is 2 + 2?", "What is 3 + 3?"]
    assert result.records[0].completion == format_target("2 + 2 = 4", "4")
    assert result.records[1].completion == GOOD
    assert result.records[2].completion == "6, no tags either"  # kept as written
    assert {r.source for r in result.records} == {"jsonl"}
    assert result.report == {
        "source": "jsonl",
        "path": str(path),
        "rows_read": 3,
        "used": 3,
        "format_ok": 2,
        "made": 3,
    }
    assert [format_ok(r.completion) for r in result.records] == [True, True, False]


def test_num_datapoints_caps_the_rows_used(tmp_path: Path) -> None:
    rows = [{"question": f"q{i}", "completion": GOOD} for i in range(5)]
    result = jsonl_source(write_rows(tmp_path / "d.jsonl", rows), num_datapoints=2)
    assert [r.question for r in result.records] == ["q0", "q1"]
    assert result.report["rows_read"] == 5 and result.report["used"] == 2


def test_missing_file_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere.jsonl does not exist"):
        jsonl_source(tmp_path / "nothere.jsonl")
    with pytest.raises(ValueError, match="sft.path is required"):
        jsonl_records(None, 10)


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ('{"question": "q", "completion": ', r"line 2: not valid JSON"),
        ({"prompt": "q", "response": "a"}, r"line 2: row has keys \['prompt', 'response'\]"),
        ([1, 2], r"line 2: expected a JSON object, got list"),
        ({"question": "q", "completion": ["a"]}, r"line 2: 'completion' must be a string"),
        ({"messages": [{"role": "user", "content": "q"}]}, r"line 2: 'messages' has no assistant"),
        ({"messages": [{"role": "assistant", "content": "a"}]}, r"line 2: .* no user turn"),
        ({"question": " ", "completion": GOOD}, r"line 2: the question and the completion"),
    ],
)
def test_bad_rows_are_errors_naming_the_line(tmp_path: Path, bad_row: object, message: str) -> None:
    path = write_rows(tmp_path / "bad.jsonl", [{"question": "q", "completion": GOOD}, bad_row])
    with pytest.raises(ValueError, match=message):
        jsonl_source(path)


def test_an_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(ValueError, match="holds no rows"):
        jsonl_source(path)
