"""`jsonl`: SFT records from the user's own JSONL file, one JSON object per line.

Three row shapes are read (the first that fits wins):

* `{"messages": [...]}` — a chat; the last assistant turn is the completion and the last user
  turn before it the question (system turns are ignored: training uses the task's prompt);
* `{"question": ..., "completion": ...}` — the completion is used as written;
* `{"question": ..., "reasoning": ..., "answer": ...}` — made into
  `<think> reasoning </think><answer> answer </answer>`.

Completions are never rewritten: one without the strict format is kept as is and counted in
the report (`format_ok` of `used`), so the user can see how much of the file teaches the format.
The whole file is validated before anything is used, so an error on line 9,000 surfaces at once.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from smarttuner.formatting import format_ok
from smarttuner.sft.records import SFTRecord, format_target

log = logging.getLogger(__name__)

SOURCE_NAME = "jsonl"
SCHEMAS = "{messages}, {question, completion} or {question, reasoning, answer}"


def _text(row: dict[str, Any], key: str, where: str) -> str:
    value = row[key]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
    return str(value)


def _content(message: dict[str, Any], where: str) -> str:
    """A chat turn's text: a string, or the joined text parts of an OpenAI content list."""
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise ValueError(f"{where}: a {message.get('role')} turn has no text 'content'")
    return content


def _from_messages(messages: Any, where: str) -> tuple[str, str]:
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ValueError(f"{where}: 'messages' must be a list of {{role, content}} objects")
    roles = [m.get("role") for m in messages]
    last_assistant = max((i for i, r in enumerate(roles) if r == "assistant"), default=None)
    if last_assistant is None:
        raise ValueError(f"{where}: 'messages' has no assistant turn (roles found: {roles})")
    users = [i for i, r in enumerate(roles[:last_assistant]) if r == "user"]
    if not users:
        raise ValueError(f"{where}: 'messages' has no user turn before the last assistant turn")
    return _content(messages[users[-1]], where), _content(messages[last_assistant], where)


def row_to_record(row: Any, where: str) -> SFTRecord:
    """One record from a parsed row; `where` ("FILE line N") starts any error message."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if "messages" in row:
        question, completion = _from_messages(row["messages"], where)
    elif {"question", "completion"} <= row.keys():
        question, completion = _text(row, "question", where), _text(row, "completion", where)
    elif {"question", "reasoning", "answer"} <= row.keys():
        completion = format_target(_text(row, "reasoning", where), _text(row, "answer", where))
        question = _text(row, "question", where)
    else:
        raise ValueError(f"{where}: row has keys {sorted(row)}; expected {SCHEMAS}")
    if not question.strip() or not completion.strip():
        raise ValueError(f"{where}: the question and the completion must not be empty")
    return SFTRecord(question.strip(), completion.strip(), source=SOURCE_NAME)


def read_jsonl(path: Path) -> list[SFTRecord]:
    """Every row of `path` as a record (blank lines skipped); errors name the line."""
    if not path.is_file():
        raise FileNotFoundError(f"sft.path {path} does not exist or is not a file")
    records = []
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path} line {line_no}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{where}: not valid JSON ({err.msg} at column {err.colno})"
                ) from None
            records.append(row_to_record(row, where))
    return records


def jsonl_records(path: Path | None, limit: int) -> tuple[list[SFTRecord], dict[str, Any]]:
    """(records, report): the first `limit` rows of the file at `path`."""
    if path is None:
        raise ValueError("sft.path is required when sft.source is 'jsonl'")
    path = Path(path).expanduser()
    rows = read_jsonl(path)
    if not rows:
        raise ValueError(f"sft.path {path} holds no rows")
    records = rows[:limit]
    n_ok = sum(format_ok(r.completion) for r in records)
    if n_ok < len(records):
        log.warning(
            "%d of %d completions from %s lack the <think>…</think><answer>…</answer> "
            "format; they are used as written",
            len(records) - n_ok,
            len(records),
            path,
        )
    report = {
        "source": SOURCE_NAME,
        "path": str(path),
        "rows_read": len(rows),
        "used": len(records),
        "format_ok": n_ok,
        "made": len(records),
    }
    log.info(
        "jsonl: using %d of %d rows from %s (%d well formatted)",
        len(records),
        len(rows),
        path,
        n_ok,
    )
    return records, report
