"""scripts/gsm_templates.py splits gsm_symbolic eval results by the template of each question."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import reasoning_gym

from smarttuner.tasks.reasoning_gym import ReasoningGymTask, spread_seed

SCRIPT = Path(__file__).parents[2] / "scripts" / "gsm_templates.py"
N = 12


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def eval_json(path: Path, correct: list[bool], seed: int = 123) -> Path:
    examples = ReasoningGymTask("gsm_symbolic").examples(seed, len(correct))
    samples = [
        {"question": e.question, "correct": c} for e, c in zip(examples, correct, strict=True)
    ]
    results = {"model": "m", "final": {"n": len(samples)}, "samples": {"final": samples}}
    path.write_text(json.dumps(results))
    return path


def test_right_answers_are_counted_per_template(tmp_path: Path) -> None:
    templates = reasoning_gym.create_dataset(
        "gsm_symbolic", size=N, seed=spread_seed(123)
    ).task_indices[:N]
    correct = [i % 3 == 0 for i in range(N)]
    expected = Counter(t for t, c in zip(templates, correct, strict=True) if c)
    train = tmp_path / "sft_data.jsonl"
    train_examples = ReasoningGymTask("gsm_symbolic").examples(42, 5)
    train.write_text("".join(json.dumps({"question": e.question}) + "\n" for e in train_examples))

    out = run(str(eval_json(tmp_path / "a.json", correct)), "--train", str(train))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"{N} eval prompts from {len(set(templates))} templates (eval seed 123)"
    assert lines[1].startswith(f"[0] m: {sum(correct)} right, in {len(expected)} templates")
    rows = {int(line.split()[0]): line.split() for line in lines[3 : 3 + len(set(templates))]}
    for t in set(templates):
        assert int(rows[t][1]) == templates.count(t)  # eval prompts of that template
        assert int(rows[t][3]) == expected[t]  # right answers
    assert sum(int(r[4]) for r in rows.values()) <= 5  # traces of eval templates


def test_an_eval_without_every_sample_is_refused(tmp_path: Path) -> None:
    path = eval_json(tmp_path / "a.json", [True, False, True])
    results = json.loads(path.read_text())
    results["final"]["n"] = 200
    path.write_text(json.dumps(results))
    out = run(str(path))
    assert out.returncode != 0
    assert "kept 3 of 200 final samples" in out.stderr
