"""scripts/answer_transitions.py sorts paired eval prompts into no answer / wrong / right,
before and after, and counts the moves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "scripts" / "answer_transitions.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def sample(q: str, correct: bool, format_ok: bool = True) -> dict:
    return {"question": q, "correct": correct, "format_ok": format_ok}


def write(path: Path, before: list[dict], after: list[dict], n: int | None = None) -> Path:
    results = {
        "baseline": {"n": n or len(before)},
        "final": {"n": n or len(after)},
        "samples": {"baseline": before, "final": after},
    }
    path.write_text(json.dumps(results))
    return path


def test_moves_are_counted_between_the_three_states(tmp_path: Path) -> None:
    before = [
        sample("a", False, False),  # no answer -> wrong
        sample("b", False, False),  # no answer -> right
        sample("c", True),  # right -> wrong
        sample("d", True),  # right -> right
        sample("e", False),  # wrong -> wrong
    ]
    after = [
        sample("a", False),
        sample("b", True),
        sample("c", False),
        sample("d", True),
        sample("e", False),
    ]
    out = run(str(write(tmp_path / "e.json", before, after)))
    assert out.returncode == 0, out.stderr
    rows = {line[:13].strip(): line[13:].split() for line in out.stdout.splitlines()[1:4]}
    assert rows["no answer"] == ["0", "1", "1"]
    assert rows["wrong"] == ["0", "1", "0"]
    assert rows["right"] == ["0", "1", "1"]
    assert out.stdout.splitlines()[-1] == "moved up: 2 prompts, down: 1, unchanged: 2"


def test_an_eval_without_every_sample_or_a_baseline_is_refused(tmp_path: Path) -> None:
    cut = run(str(write(tmp_path / "cut.json", [sample("a", True)], [sample("a", True)], n=200)))
    assert cut.returncode != 0 and "kept 1 of 200 baseline samples" in cut.stderr
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"final": {"n": 1}, "samples": {"final": [sample("a", True)]}}))
    alone = run(str(single))
    assert alone.returncode != 0 and "not a --compare-to result" in alone.stderr
    shuffled = run(str(write(tmp_path / "s.json", [sample("a", True)], [sample("b", True)])))
    assert shuffled.returncode != 0 and "not the same prompts" in shuffled.stderr
