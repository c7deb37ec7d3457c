"""The HTML report in a real headless Chromium: it renders (a non-trivial screenshot), its
inline script runs (the completions browser shows the last step only) and model text stays
text (no injected element). Skipped when no Chromium is installed (`apt-get install
chromium` on Debian)."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import textwrap
from pathlib import Path

import pytest

from smarttuner.config import GRPOConfig, build_config
from smarttuner.grpo.trainer import train_grpo
from smarttuner.report import write_report

CHROMIUM = next(
    (
        path
        for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
        if (path := shutil.which(name))
    ),
    None,
)
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        CHROMIUM is None, reason="needs a headless Chromium (apt-get install chromium)"
    ),
]
WIDTH, HEIGHT = 1280, 2000
ITERATIONS, PROMPTS, GROUP = 2, 2, 4
SPREAD_REWARD = """
def text_length(prompts, completions, **kwargs):
    return [len(c) / 50.0 for c in completions]
"""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'chromium-profile'}", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])  # IHDR width, height


@pytest.fixture()
def report(tiny_model_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "spread_rewards.py").write_text(textwrap.dedent(SPREAD_REWARD))
    monkeypatch.syspath_prepend(str(tmp_path))
    run = tmp_path / "run"
    cfg = build_config(
        GRPOConfig,
        None,
        {
            "model.name": tiny_model_dir,
            "task.name": "arithmetic",
            "num_iterations": ITERATIONS,
            "grpo.exploration_batchsize": PROMPTS,
            "grpo.num_generations": GROUP,
            "optim.batch_size": 4,
            "optim.gradient_accumulation_steps": 1,
            "generation.max_new_tokens": 8,
            "eval.num_examples": 2,
            "output_dir": str(run),
            "rewards": [
                {"name": "correctness", "weight": 0.85},
                {"name": "format", "weight": 0.15},
                {"name": "spread_rewards:text_length", "weight": 1.0},
            ],
        },
    )
    train_grpo(cfg)
    evil = {"step": 1, "prompt": "p", "completion": "<img id=injected src=x>", "reward": 0.0,
            "advantage": 0.0, "components": {}}  # fmt: skip
    with (run / "completions.jsonl").open("a") as fh:
        fh.write(json.dumps(evil) + "\n")
    return write_report(run)


def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    result = _chromium(
        tmp_path, f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", report.as_uri()
    )
    assert shot.is_file(), result.stderr[-2000:]
    assert _png_size(shot) == (WIDTH, HEIGHT)
    assert shot.stat().st_size > 50_000  # text, tables and figures, not a blank page
    from PIL import Image

    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200

    dom = _chromium(tmp_path, "--dump-dom", report.as_uri()).stdout
    assert 'id="completions-table"' in dom
    assert "&lt;img id=injected src=x&gt;" in dom and '<img id="injected"' not in dom
    # the inline script ran: the last step is selected and the other step's groups are hidden
    groups = re.findall(r'<tbody class="group" data-step="(\d+)"( hidden="")?', dom)
    assert groups and all(bool(hidden) == (step != str(ITERATIONS)) for step, hidden in groups)
    shown = re.search(r'<span id="shown-count">(\d+)</span>', dom)
    assert shown and int(shown.group(1)) == PROMPTS * GROUP
