"""`teacher`: traces from any OpenAI-compatible chat endpoint, verified before use.

Each question is sent once to `POST {url}/chat/completions` with the task's system prompt; a
reply is kept only when its format is strict and the task grades its answer correct. Every
reply (kept or not) is appended to a JSONL cache keyed by (model, system prompt, question), so
a rerun — or a run that failed halfway — asks only for what it has not seen. Standard library
only (urllib), so no HTTP client dependency.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from smarttuner.config import TeacherSettings
from smarttuner.formatting import format_ok
from smarttuner.sft.records import SFTRecord
from smarttuner.tasks.base import Example, Task

log = logging.getLogger(__name__)

SOURCE_NAME = "teacher"
RETRIES = 3  # attempts per request on connection errors, 429 and 5xx
BACKOFF_SECONDS = 1.0  # wait before attempt n+1 is BACKOFF_SECONDS * 2**(n-1)
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

CacheKey = tuple[str, str, str]  # (model, system prompt, question)


class TeacherError(OSError):
    """The teacher endpoint failed or answered something unreadable (one-line message)."""


@dataclass(frozen=True)
class TeacherClient:
    """A minimal OpenAI chat-completions client: one question in, the reply text out."""

    url: str
    model: str
    api_key: str | None
    temperature: float
    max_tokens: int
    timeout: float
    retries: int = RETRIES
    backoff: float = BACKOFF_SECONDS

    @property
    def endpoint(self) -> str:
        return self.url.rstrip("/") + "/chat/completions"

    def ask(self, system_prompt: str, question: str) -> str:
        """The assistant message's content for one question (retried; TeacherError on failure)."""
        payload = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": system_prompt},
                {"role": "user", "content": question},
            ],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        body = self._post(json.dumps(payload).encode())
        try:
            content = json.loads(body)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise TeacherError(
                f"teacher endpoint {self.endpoint} returned no choices[0].message.content "
                f"({type(err).__name__}); reply starts {body[:120]!r}"
            ) from None
        return content or ""

    def _post(self, data: bytes) -> str:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(1, self.retries + 1):
            request = urllib.request.Request(self.endpoint, data=data, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.read().decode("utf-8", errors="replace")
            except urllib.error.HTTPError as err:
                detail = err.read().decode("utf-8", errors="replace")[:200]
                last = f"HTTP {err.code} {err.reason}: {detail}".strip()
                if err.code != 429 and err.code < 500:
                    raise TeacherError(
                        f"teacher endpoint {self.endpoint} refused the request ({last})"
                    ) from None
            except (OSError, http.client.HTTPException) as err:  # refused, DNS, timeout, reset
                last = str(getattr(err, "reason", err))
            log.warning(
                "teacher request %d/%d to %s failed: %s", attempt, self.retries, self.endpoint, last
            )
            if attempt < self.retries:
                time.sleep(self.backoff * 2 ** (attempt - 1))
        raise TeacherError(
            f"teacher endpoint {self.endpoint} failed after {self.retries} attempts: {last}"
        )


def resolve_api_key(settings: TeacherSettings) -> str | None:
    """The key from `settings.api_key_env`; required unless the URL is on this machine."""
    key = os.environ.get(settings.api_key_env) or None
    if key is None and urlsplit(settings.url).hostname not in LOCAL_HOSTS:
        raise ValueError(
            f"environment variable {settings.api_key_env} (sft.teacher.api_key_env) is not set; "
            f"it must hold the API key for {settings.url}"
        )
    return key


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"sft.teacher.url must be an http(s) URL such as https://api.openai.com/v1, got {url!r}"
        )


def make_client(settings: TeacherSettings, api_key: str | None) -> TeacherClient:
    return TeacherClient(
        settings.url,
        settings.model,
        api_key,
        settings.temperature,
        settings.max_tokens,
        settings.timeout,
        RETRIES,
        BACKOFF_SECONDS,
    )


def cache_file(cache_dir: Path, model: str) -> Path:
    """`cache_dir/teacher_<model>.jsonl`, the model name reduced to [A-Za-z0-9._-]."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._") or "model"
    return cache_dir / f"teacher_{safe}.jsonl"


def load_cache(path: Path) -> dict[CacheKey, str]:
    """Replies cached in `path` (a missing file is an empty cache; broken lines are skipped)."""
    cache: dict[CacheKey, str] = {}
    if not path.exists():
        return cache
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                cache[(row["model"], row["system_prompt"], row["question"])] = row["reply"]
            except (ValueError, KeyError, TypeError):
                log.warning("skipping unreadable line %d of teacher cache %s", line_no, path)
    return cache


def append_cache(path: Path, key: CacheKey, reply: str) -> None:
    model, system_prompt, question = key
    row = {"model": model, "system_prompt": system_prompt, "question": question, "reply": reply}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def teacher_records(
    task: Task,
    examples: Sequence[Example],
    settings: TeacherSettings,
    cache_dir: Path | None,
) -> tuple[list[SFTRecord], dict[str, Any]]:
    """(records, report): one verified teacher reply per distinct question.

    The API key is only required when some question is not cached yet. Without `cache_dir`
    nothing is cached.
    """
    check_url(settings.url)
    path = cache_file(cache_dir, settings.model) if cache_dir is not None else None
    cache = load_cache(path) if path is not None else {}
    keys = [(settings.model, task.system_prompt, e.question) for e in examples]
    needs_key = any(key not in cache for key in keys)
    client = make_client(settings, resolve_api_key(settings) if needs_key else None)
    records: list[SFTRecord] = []
    seen: set[str] = set()
    requested = bad_format = wrong = 0
    for example, key in zip(examples, keys, strict=True):
        if key not in cache:
            cache[key] = client.ask(task.system_prompt, example.question)
            requested += 1
            if path is not None:
                append_cache(path, key, cache[key])
            if requested % 20 == 0:
                log.info("teacher: %d requests sent", requested)
        reply = cache[key].strip()
        if example.question in seen:
            continue
        seen.add(example.question)
        if not format_ok(reply):
            bad_format += 1
        elif not task.is_correct(reply, example):
            wrong += 1
        else:
            records.append(SFTRecord(example.question, reply, source=SOURCE_NAME))
    asked = len(seen)
    log.info(
        "teacher %s: %d of %d questions accepted (%d new requests, %d bad format, %d wrong)",
        settings.model,
        len(records),
        asked,
        requested,
        bad_format,
        wrong,
    )
    report = {
        "source": SOURCE_NAME,
        "model": settings.model,
        "asked": asked,
        "requested": requested,
        "cached": asked - requested,
        "accepted": len(records),
        "acceptance_rate": len(records) / asked if asked else 0.0,
        "rejected_format": bad_format,
        "rejected_wrong": wrong,
        "made": len(records),
    }
    return records, report
