"""scripts/first_wrong_step.py tabulates the first false equation of each wrong completion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "scripts" / "first_wrong_step.py"


def test_script_groups_first_false_steps_by_shape(tmp_path: Path) -> None:
    def sample(completion: str, correct: bool) -> dict:
        return {"question": "Q?", "gold": "1", "completion": completion, "correct": correct}

    samples = [
        sample("<think> 8 * 19 = 142. 142 + 1 = 144 </think><answer>144</answer>", False),
        sample("<think> 4 * 19 = 74. 74 - 1 = 73 </think><answer>73</answer>", False),
        sample("<think> 16 - 8 = 8 </think><answer>-8</answer>", False),  # sign dropped
        sample("<think> 2 + 2 = 4 </think><answer>4</answer>", True),
    ]
    result = tmp_path / "eval.json"
    result.write_text(json.dumps({"samples": {"final": samples}}))
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(result)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "3 wrong of 4 completions kept"
    assert out[1].split() == [
        "2",
        "d",
        "*",
        "dd",
        "8",
        "*",
        "19",
        "=",
        "142",
        "|",
        "4",
        "*",
        "19",
        "=",
        "74",
    ]
    assert out[2].split()[:4] == ["1", "all", "steps", "true"]
