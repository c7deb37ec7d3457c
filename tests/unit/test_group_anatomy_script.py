"""scripts/group_anatomy.py sorts a run's GRPO groups by how their rewards differ."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "scripts" / "group_anatomy.py"


def rows(step: int, correctness: list[float], rewards: list[float], advantages: list[float]):
    return [
        {"step": step, "reward": r, "advantage": a, "components": {"correctness": c}}
        for c, r, a in zip(correctness, rewards, advantages, strict=True)
    ]


def run(path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), str(path), "--group-size", "2", *args]
    return subprocess.run(command, capture_output=True, text=True)


def test_groups_are_sorted_by_kind_with_their_share_of_advantage(tmp_path: Path) -> None:
    samples = (
        rows(1, [1.0, 1.0], [1.3, 1.3], [0.0, 0.0])  # flat
        + rows(1, [1.0, 0.4], [1.3, 0.5], [3.0, -3.0])  # mixed
        + rows(2, [1.0, 1.0], [1.3, 1.2], [0.5, -0.5])  # all right, true_equations differs
        + rows(3, [0.2, 0.4], [0.2, 0.4], [-0.5, 0.5])  # none right
    )
    path = tmp_path / "completions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in samples))
    out = run(path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "4 groups of 2 over 3 steps"
    assert lines[3].split() == ["all"] + "0.25 / 0.00 0.25 / 0.75 0.25 / 0.12 0.25 / 0.12".split()
    assert (
        lines[4].split()
        == ["steps", "1-1"] + "0.50 / 0.00 0.50 / 1.00 0.00 / 0.00 0.00 / 0.00".split()
    )


def test_bad_input_is_one_line_error(tmp_path: Path) -> None:
    missing = run(tmp_path / "nope.jsonl")
    assert missing.returncode != 0 and missing.stderr.strip() == (
        f"error: {tmp_path / 'nope.jsonl'} does not exist"
    )
    path = tmp_path / "completions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows(1, [1.0], [1.0], [0.0])))
    ragged = run(path)
    assert ragged.returncode != 0
    assert ragged.stderr.strip() == "error: step 1 has 1 samples, not groups of 2"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows(1, [1.0, 0.0], [1.0, 0.0], [1, -1])))
    unknown = run(path, "--component", "exactness")
    assert unknown.returncode != 0
    assert "no reward named 'exactness'" in unknown.stderr
