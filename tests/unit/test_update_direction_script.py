"""scripts/update_direction.py: adapters along a LoRA update, the mean of several updates, and
random steps with the update's per-tensor norms; bad input stops before any model is loaded."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

SCRIPT = Path(__file__).parents[2] / "scripts" / "update_direction.py"
spec = importlib.util.spec_from_file_location("update_direction", SCRIPT)
update_direction = importlib.util.module_from_spec(spec)
spec.loader.exec_module(update_direction)


def lora(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"a.lora_A": torch.randn(4, 8, generator=g), "a.lora_B": torch.randn(8, 4, generator=g)}


def test_along_interpolates_and_extrapolates() -> None:
    start, end = lora(0), lora(1)
    for k in start:
        assert torch.equal(update_direction.along(start, end, 0.0)[k], start[k])
        assert torch.allclose(update_direction.along(start, end, 1.0)[k], end[k], atol=1e-6)
        reversed_ = update_direction.along(start, end, -1.0)[k]
        assert torch.allclose(reversed_, 2 * start[k] - end[k], atol=1e-6)


def test_mean_end_averages_the_updates() -> None:
    start, one, two = lora(0), lora(1), lora(2)
    mean = update_direction.mean_end(start, [one, two])
    for k in start:
        assert torch.allclose(mean[k], (one[k] + two[k]) / 2, atol=1e-6)
    assert torch.allclose(
        update_direction.mean_end(start, [one])["a.lora_A"], one["a.lora_A"], atol=1e-6
    )


def test_random_step_keeps_each_tensors_update_norm_but_not_its_direction() -> None:
    start, end = lora(0), lora(1)
    step = update_direction.random_step(start, end, seed=3)
    for k in start:
        moved = step[k] - start[k]
        assert torch.isclose(moved.norm(), (end[k] - start[k]).norm(), rtol=1e-4)
        cosine = torch.nn.functional.cosine_similarity(
            moved.flatten(), (end[k] - start[k]).flatten(), dim=0
        )
        assert abs(cosine) < 0.9
    assert torch.equal(step["a.lora_B"], update_direction.random_step(start, end, 3)["a.lora_B"])


def test_flat_update_is_the_concatenated_difference() -> None:
    start, end = lora(0), lora(1)
    flat = update_direction.flat_update(start, end)
    assert flat.numel() == 64
    expected = sum(((end[k] - start[k]) ** 2).sum() for k in start) ** 0.5
    assert torch.isclose(flat.norm(), expected)


def adapter(directory: Path, weights: dict[str, torch.Tensor]) -> Path:
    directory.mkdir()
    save_file(weights, str(directory / "adapter_model.safetensors"))
    return directory


@pytest.mark.parametrize("case", ["different tensors", "output exists"])
def test_bad_input_is_one_line_error(tmp_path: Path, case: str) -> None:
    start = adapter(tmp_path / "start", lora(0))
    other = {"b.lora_A": torch.zeros(4, 8)} if case == "different tensors" else lora(1)
    end = adapter(tmp_path / "end", other)
    output = tmp_path / "out.json"
    if case == "output exists":
        output.write_text("kept")
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--start", str(start), "--end", str(end)]
        + ["--output", str(output)],
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0
    assert run.stderr.strip().startswith("error:")
    assert len(run.stderr.strip().splitlines()) == 1
    if case == "output exists":
        assert output.read_text() == "kept"
    else:
        assert not output.exists()


def test_main_scores_each_variant_paired_against_the_start(
    tiny_adapter_dir: str, tmp_path: Path, monkeypatch
) -> None:
    import json
    import shutil

    from safetensors.torch import load_file

    end = tmp_path / "end"
    shutil.copytree(tiny_adapter_dir, end)
    weights = load_file(str(end / update_direction.WEIGHTS))
    save_file({k: v * 3 for k, v in weights.items()}, str(end / update_direction.WEIGHTS))
    output = tmp_path / "rows.json"
    argv = ["--start", tiny_adapter_dir, "--end", str(end), "--alphas", "1", "--random", "1"]
    argv += ["--num-examples", "4", "--max-new-tokens", "4", "--output", str(output)]
    monkeypatch.setattr(sys, "argv", ["update_direction.py", *argv])
    update_direction.main()
    rows = json.loads(output.read_text())["rows"]
    assert [r["variant"] for r in rows] == ["alpha 0 (start)", "alpha 1", "random seed 0"]
    start = rows[0]
    assert (start["lost"], start["gained"], start["sign_test_p"]) == (0, 0, 1.0)
    for row in rows:  # every variant's accuracy is the start's, moved by what it lost and gained
        assert row["accuracy"] == pytest.approx(
            start["accuracy"] + (row["gained"] - row["lost"]) / 4
        )
        assert 0.0 <= row["sign_test_p"] <= 1.0
