"""The `teacher` SFT source against a local stub of the OpenAI chat-completions API."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from smarttuner.config import SFTSettings, TeacherSettings
from smarttuner.formatting import format_ok
from smarttuner.sft import teacher
from smarttuner.sft.sources import SourceContext, make_records
from smarttuner.sft.teacher import TeacherError, cache_file
from smarttuner.tasks import get_task

TASK = get_task("arithmetic")
_EXPR = re.compile(r"\((\d+) ([-+*]) (\d+)\) ([-+*]) (\d+)")
_OPS: dict[str, Callable[[int, int], int]] = {
    "+": lambda x, y: x + y,
    "-": lambda x, y: x - y,
    "*": lambda x, y: x * y,
}


def solve(question: str) -> str:
    """A correct reply to an arithmetic question, worked out from the question text."""
    a, op1, b, op2, c = _EXPR.search(question).groups()
    mid = _OPS[op1](int(a), int(b))
    result = _OPS[op2](mid, int(c))
    return (
        f"<think> {a} {op1} {b} = {mid}, then {mid} {op2} {c} = {result} </think>"
        f"<answer> {result} </answer>"
    )


@dataclass
class Stub:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


@contextmanager
def stub_server(
    reply: Callable[[str], str] = solve, status: int = 200, body: dict | None = None
) -> Iterator[Stub]:
    """An OpenAI-compatible endpoint on 127.0.0.1 that answers with `reply(question)` (or
    with `status` and an error, or with `body` verbatim)."""
    stub = Stub(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            stub.requests.append(request)
            stub.headers.append(dict(self.headers))
            if self.path != "/v1/chat/completions":
                status_, out = 404, {"error": f"no route {self.path}"}
            elif status != 200:
                status_, out = status, {"error": "teacher is down"}
            elif body is not None:
                status_, out = 200, body
            else:
                content = reply(request["messages"][-1]["content"])
                message = {"role": "assistant", "content": content}
                status_, out = 200, {"choices": [{"index": 0, "message": message}]}
            data = json.dumps(out).encode()
            self.send_response(status_)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    stub.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(teacher, "BACKOFF_SECONDS", 0.0)
    monkeypatch.delenv("STUB_TEACHER_KEY", raising=False)


def run_teacher(url: str, cache_dir: Path | None, n: int = 6, model: str = "stub/teacher:v1"):
    settings = SFTSettings(
        source="teacher",
        teacher=TeacherSettings(url=url, model=model, api_key_env="STUB_TEACHER_KEY", timeout=5),
    )
    ctx = SourceContext(
        TASK, "arithmetic", TASK.examples(seed=2, n=n), settings, cache_dir=cache_dir
    )
    return make_records("teacher", ctx)


def test_teacher_records_are_verified_and_cached(tmp_path: Path) -> None:
    with stub_server() as stub:
        result = run_teacher(stub.url, tmp_path)
        assert len(stub.requests) == 6
        first = stub.requests[0]
        assert first["model"] == "stub/teacher:v1"
        assert first["messages"][0] == {"role": "system", "content": TASK.system_prompt}
        assert first["messages"][1]["role"] == "user"
        assert first["temperature"] == 0.3 and first["max_tokens"] == 400
        assert "Authorization" not in stub.headers[0]  # no key needed on localhost

        examples = TASK.examples(seed=2, n=6)
        assert [r.question for r in result.records] == [e.question for e in examples]
        for record, example in zip(result.records, examples, strict=True):
            assert format_ok(record.completion) and TASK.is_correct(record.completion, example)
            assert record.source == "teacher"
        assert result.report["asked"] == 6 and result.report["accepted"] == 6
        assert result.report["requested"] == 6 and result.report["cached"] == 0
        path = cache_file(tmp_path, "stub/teacher:v1")
        assert path.name == "teacher_stub_teacher_v1.jsonl"
        assert len(path.read_text().splitlines()) == 6

        rerun = run_teacher(stub.url, tmp_path)
        assert len(stub.requests) == 6  # zero new requests
        assert rerun.records == result.records
        assert rerun.report["requested"] == 0 and rerun.report["cached"] == 6

        more = run_teacher(stub.url, tmp_path, n=8)  # only the 2 new questions are sent
        assert len(stub.requests) == 8 and more.report["requested"] == 2


def test_cached_replies_need_no_server_and_no_key(tmp_path: Path) -> None:
    with stub_server() as stub:
        run_teacher(stub.url, tmp_path, n=3)
    # same cache, an unreachable non-local URL and no key: everything comes from the cache
    offline = run_teacher("https://teacher.invalid/v1", tmp_path, n=3)
    assert offline.report["cached"] == 3 and len(offline.records) == 3


def test_wrong_and_unformatted_replies_are_rejected(tmp_path: Path) -> None:
    replies = iter(["<answer> 1 </answer>", "<think> hm </think><answer> 99999 </answer>"])

    def reply(question: str) -> str:
        return next(replies, None) or solve(question)

    with stub_server(reply) as stub:
        result = run_teacher(stub.url, tmp_path, n=4)
    assert len(result.records) == 2
    assert result.report["rejected_format"] == 1 and result.report["rejected_wrong"] == 1
    assert result.report["acceptance_rate"] == 0.5


def test_api_key_is_sent_and_required_for_remote_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="STUB_TEACHER_KEY"):
        run_teacher("https://api.example.com/v1", tmp_path)
    monkeypatch.setenv("STUB_TEACHER_KEY", "sk-test")
    with stub_server() as stub:
        run_teacher(stub.url, None, n=1)
    assert stub.headers[0]["Authorization"] == "Bearer sk-test"


def test_server_errors_are_retried_then_reported_with_the_url(tmp_path: Path) -> None:
    with stub_server(status=500) as stub:
        with pytest.raises(
            TeacherError,
            match=rf"{stub.url}/chat/completions failed after 3 "
            r"attempts: HTTP 500",
        ):
            run_teacher(stub.url, tmp_path)
        assert len(stub.requests) == 3


def test_client_errors_are_not_retried(tmp_path: Path) -> None:
    with stub_server(status=401) as stub:
        with pytest.raises(TeacherError, match="refused the request .HTTP 401"):
            run_teacher(stub.url, tmp_path)
        assert len(stub.requests) == 1


def test_unreachable_endpoint_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(TeacherError, match=rf"{url}/chat/completions failed after 3 attempts"):
        run_teacher(url, tmp_path)


def test_a_bad_url_or_reply_shape_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be an http"):
        run_teacher("api.openai.com/v1", tmp_path)
    with stub_server(body={"error": "model overloaded"}) as stub:
        with pytest.raises(TeacherError, match="returned no choices"):
            run_teacher(stub.url, tmp_path)
    with stub_server() as stub:
        with pytest.raises(TeacherError, match="refused the request .HTTP 404"):
            run_teacher(stub.url.removesuffix("/v1") + "/v2", tmp_path)
