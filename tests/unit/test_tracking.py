"""The tracker: metrics.jsonl always, TensorBoard / W&B / trackio when asked, one interface.

W&B and trackio are not installed here: their backends are checked against stand-in modules
that record the calls (the calls are those of the packages' documented APIs)."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from smarttuner.tracking import Tracker, check_report_to, split_record

GRPO_RECORD = {
    "phase": "grpo",
    "step": 3,
    "loss": 0.25,
    "kl": float("nan"),
    "reward/format_mean": 0.5,
    "accuracy": 1,
    "ok": True,
    "note": "text",
    "rewards": [0.0, 1.0, 0.5],
    "advantages": [-1.0, 1.0, float("inf")],
    "empty": [],
}


def test_split_record_keeps_scalars_and_numeric_lists() -> None:
    scalars, lists = split_record(GRPO_RECORD)
    # NaN, booleans, strings and the step/phase coordinates are not metrics; a list with a
    # non-finite value is not a histogram
    assert scalars == {"grpo/loss": 0.25, "grpo/reward/format_mean": 0.5, "grpo/accuracy": 1.0}
    assert lists == {"grpo/rewards": [0.0, 1.0, 0.5]}
    eval_scalars, _ = split_record({"phase": "eval", "step": 0, "split": "eval", "accuracy": 0.5})
    assert eval_scalars == {"eval/accuracy": 0.5}


def test_tracker_without_backends_writes_the_files_only(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path)
    tracker.log(GRPO_RECORD)
    tracker.log_completions(3, [{"completion": "<answer>1</answer>", "reward": 1.0}])
    tracker.close()
    line = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert line["loss"] == 0.25 and line["kl"] is None  # NaN is null in JSON
    rows = [json.loads(x) for x in (tmp_path / "completions.jsonl").read_text().splitlines()]
    assert rows == [{"step": 3, "completion": "<answer>1</answer>", "reward": 1.0}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["completions.jsonl", "metrics.jsonl"]
    assert tracker.report_to == []


def test_report_to_is_validated_early(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert check_report_to(None) == [] and check_report_to(["none"]) == []
    assert check_report_to(["TensorBoard", "tensorboard"]) == ["tensorboard"]
    with pytest.raises(ValueError, match=r"'mlflow'.*none, tensorboard, trackio, wandb"):
        check_report_to(["mlflow"])
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name)
    )
    with pytest.raises(ValueError, match=r"wandb package.*pip install 'smarttuner\[wandb\]'"):
        Tracker(tmp_path / "run", ["wandb"])
    assert not (tmp_path / "run").exists()  # nothing written before the check


def test_tensorboard_scalars_histograms_and_text(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with Tracker(tmp_path, ["tensorboard"], config={"grpo": {"beta": 0.04}}) as tracker:
        tracker.log({"phase": "eval", "step": 0, "split": "eval", "accuracy": 0.25})
        for step in (1, 2):
            tracker.log({**GRPO_RECORD, "step": step, "loss": 0.1 * step})
        tracker.log_completions(2, [{"completion": "a ``` b", "reward": 0.5, "advantage": 1.0}])
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = events.Tags()
    assert set(tags["scalars"]) == {
        "eval/accuracy",
        "grpo/loss",
        "grpo/reward/format_mean",
        "grpo/accuracy",
    }
    assert [(e.step, e.value) for e in events.Scalars("grpo/loss")] == [
        (1, pytest.approx(0.1)),
        (2, pytest.approx(0.2)),
    ]
    assert tags["histograms"] == ["grpo/rewards"]
    assert {"config/text_summary", "completions/text_summary"} <= set(tags["tensors"])


class _Recorder:
    """Stands in for a tracking package: records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []


def _fake_wandb(recorder: _Recorder) -> types.ModuleType:
    module = types.ModuleType("wandb")

    class Run:
        def define_metric(self, name, step_metric=None):
            recorder.calls.append(("define_metric", (name, step_metric)))

        def log(self, payload):
            recorder.calls.append(("log", payload))

        def finish(self):
            recorder.calls.append(("finish", None))

    def init(**kwargs):
        recorder.calls.append(("init", kwargs))
        return Run()

    module.init = init
    module.Histogram = lambda values: ("hist", tuple(values))
    module.Table = lambda columns, data: ("table", tuple(columns), data)
    return module


def _fake_trackio(recorder: _Recorder) -> types.ModuleType:
    module = types.ModuleType("trackio")
    module.init = lambda **kwargs: recorder.calls.append(("init", kwargs))
    module.log = lambda payload, step=None: recorder.calls.append(("log", (payload, step)))
    module.finish = lambda: recorder.calls.append(("finish", None))
    module.Table = lambda columns, data: ("table", tuple(columns), data)
    return module


def _install(monkeypatch: pytest.MonkeyPatch, name: str, module: types.ModuleType) -> None:
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    monkeypatch.setitem(sys.modules, name, module)


def test_wandb_backend_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    recorder = _Recorder()
    _install(monkeypatch, "wandb", _fake_wandb(recorder))
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    with Tracker(tmp_path / "run-a", ["wandb"], config={"lr": 1e-6}) as tracker:
        tracker.log(GRPO_RECORD)
        tracker.log_completions(3, [{"prompt": "p", "completion": "c", "reward": 1.0}])
    (name, init), (_, metric), (_, scalars), (_, table), (finish, _) = recorder.calls
    assert name == "init" and finish == "finish"
    assert init == {
        "project": "smarttuner",
        "name": "run-a",
        "dir": str(tmp_path / "run-a"),
        "config": {"lr": 1e-6},
    }
    assert metric == ("*", "step")
    assert scalars["step"] == 3 and scalars["grpo/loss"] == 0.25
    assert scalars["grpo/rewards"] == ("hist", (0.0, 1.0, 0.5))
    kind, columns, data = table["completions"]
    assert columns[:5] == ("step", "prompt", "completion", "reward", "advantage")
    assert data == [[3, "p", "c", 1.0, None]]


def test_trackio_backend_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    recorder = _Recorder()
    _install(monkeypatch, "trackio", _fake_trackio(recorder))
    tracker = Tracker(tmp_path / "run-b", ["trackio"], project="exp")
    tracker.log(GRPO_RECORD)
    tracker.close()
    assert recorder.calls[0] == ("init", {"project": "exp", "name": "run-b", "config": None})
    payload, step = recorder.calls[1][1]
    assert step == 3 and payload["grpo/loss"] == 0.25 and "grpo/rewards" not in payload
    assert recorder.calls[-1] == ("finish", None)


def test_a_failing_backend_is_switched_off_not_fatal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = _Recorder()
    module = _fake_trackio(recorder)

    def broken(payload, step=None):
        raise ConnectionError("server went away")

    module.log = broken
    _install(monkeypatch, "trackio", module)
    tracker = Tracker(tmp_path, ["trackio"])
    with caplog.at_level(logging.WARNING, logger="smarttuner.tracking"):
        tracker.log(GRPO_RECORD)
        tracker.log({**GRPO_RECORD, "step": 4})
    assert caplog.text.count("server went away") == 1
    assert tracker.report_to == []
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [3, 4]  # the file still has everything
    assert math.isclose(json.loads(lines[0])["loss"], 0.25)


def test_a_backend_that_cannot_start_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recorder = _Recorder()
    module = _fake_wandb(recorder)

    def no_login(**kwargs):
        raise RuntimeError("api_key not configured (no-tty)")

    module.init = no_login
    _install(monkeypatch, "wandb", module)
    with pytest.raises(ValueError, match="report_to 'wandb' could not start: api_key"):
        Tracker(tmp_path, ["tensorboard", "wandb"])
