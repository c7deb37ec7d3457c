"""Pooling paired results over seeds: per-run splits, the mean change, its prompt bootstrap,
and the checks that keep runs on different eval sets apart."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smarttuner.cli import app
from smarttuner.evaluate.paired import greedy_record
from smarttuner.evaluate.pooled import (
    bootstrap_mean_ci,
    check_same_prompts,
    load_paired,
    pool_paired,
    verdicts_from_results,
)

T, F = True, False


def test_pool_paired_per_run_and_pooled_numbers():
    start = [T, T, F, F]
    runs = [(start, [T, T, T, F]), (start, [T, F, T, T])]  # +1 prompt; +2 gained, 1 lost
    pooled = pool_paired(runs, resamples=200)
    first, second = pooled["runs"]
    assert (first["before"], first["after"], first["change"]) == (0.5, 0.75, 0.25)
    assert (first["gained"], first["lost"]) == (1, 0)
    assert (second["gained"], second["lost"]) == (2, 1)
    assert second["change"] == pytest.approx(0.25)
    assert pooled["mean_change"] == pytest.approx(0.25)
    assert pooled["sd_change"] == pytest.approx(0.0)
    # per prompt, averaged over the runs: 0, -0.5, +1, +0.5
    assert (pooled["prompts_up"], pooled["prompts_down"]) == (2, 1)
    assert pooled["n_runs"] == 2 and pooled["n_prompts"] == 4


def test_pool_keeps_each_run_paired_with_its_own_start():
    # two runs from different starts: the pooled change is the mean of their own changes
    runs = [([F, F, F, F], [T, F, F, F]), ([T, T, T, T], [T, T, T, F])]
    pooled = pool_paired(runs, resamples=100)
    assert pooled["mean_change"] == pytest.approx(0.0)
    assert pooled["sd_change"] == pytest.approx(statistics.stdev([0.25, -0.25]))
    assert pooled["mean_before"] == pytest.approx(0.5)


def test_bootstrap_interval_brackets_the_mean_and_is_reproducible():
    values = [0.0] * 80 + [1.0] * 20
    low, high = bootstrap_mean_ci(values, resamples=2000, seed=3)
    assert low < 0.2 < high
    assert 0.1 < low and high < 0.3
    assert bootstrap_mean_ci(values, resamples=2000, seed=3) == (low, high)
    assert bootstrap_mean_ci([0.5] * 10, resamples=50) == (0.5, 0.5)


def test_pool_rejects_runs_on_different_prompts_and_empty_input():
    with pytest.raises(ValueError, match="same prompts"):
        pool_paired([([T, F], [T, T]), ([T, F, F], [T, T, F])])
    with pytest.raises(ValueError, match="at least one"):
        pool_paired([])
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_mean_ci([1.0], resamples=0)


def test_verdicts_need_a_paired_record():
    results = {"paired": {"greedy": greedy_record([T, F], [T, T])}}
    assert verdicts_from_results(results) == ([T, F], [T, T])
    with pytest.raises(ValueError, match="no paired per-prompt verdicts.*--compare-to"):
        verdicts_from_results({"final": {"accuracy": 0.5}}, "x.json")


def test_check_same_prompts_names_the_mismatch():
    check_same_prompts([{"task": "a", "eval_seed": 1}, {"task": "a"}], ["r1", "r2"])
    with pytest.raises(ValueError, match="different eval_seeds.*r1: 1, r2: 2"):
        check_same_prompts([{"eval_seed": 1}, {"eval_seed": 2}], ["r1", "r2"])


def _write_run(folder: Path, before: list[bool], after: list[bool], task: str = "t") -> Path:
    folder.mkdir(parents=True)
    paired = {"greedy": greedy_record(before, after), "against": "baseline"}
    results = {"task": task, "paired": paired}
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_load_paired_reads_a_run_folder_or_a_file(tmp_path):
    run = _write_run(tmp_path / "run", [F, F], [T, F])
    assert load_paired(run)[1] == ([F, F], [T, F])
    assert load_paired(run / "results.json")[0]["task"] == "t"
    with pytest.raises(FileNotFoundError, match="Results file not found"):
        load_paired(tmp_path / "missing")


def test_cli_pool_prints_runs_and_the_pooled_line_and_writes_json(tmp_path):
    a = _write_run(tmp_path / "s0", [T, F, F, F], [T, T, F, F])
    b = _write_run(tmp_path / "s1", [T, F, F, F], [T, T, T, F])
    out = tmp_path / "pooled.json"
    result = CliRunner().invoke(app, ["pool", str(a), str(b), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "pooled over 2 runs, 4 prompts" in result.output
    assert "change +0.375" in result.output
    written = json.loads(out.read_text())
    assert written["sources"] == [str(a), str(b)]
    assert [r["gained"] for r in written["runs"]] == [1, 2]


def test_cli_pool_errors_are_one_line_and_never_overwrite(tmp_path):
    a = _write_run(tmp_path / "s0", [T, F], [T, T], task="syllogism")
    b = _write_run(tmp_path / "s1", [T, F], [T, T], task="arithmetic")
    mixed = CliRunner().invoke(app, ["pool", str(a), str(b)])
    assert mixed.exit_code != 0
    assert mixed.output.strip().startswith("error:") and "different tasks" in mixed.output
    out = tmp_path / "kept.json"
    out.write_text("keep me")
    refused = CliRunner().invoke(app, ["pool", str(a), "-o", str(out)])
    assert refused.exit_code != 0 and "already exists" in refused.output
    assert out.read_text() == "keep me"
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "results.json").write_text(json.dumps({"final": {"accuracy": 1.0}}))
    unpaired = CliRunner().invoke(app, ["pool", str(bare)])
    assert unpaired.exit_code != 0 and "no paired per-prompt verdicts" in unpaired.output
