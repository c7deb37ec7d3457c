"""GLUE-style evaluation: metrics by hand, the file layouts, label-word scoring against a
plain forward pass, and the harness on the shipped sample files with the tiny model."""

from __future__ import annotations

import builtins
import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from smarttuner.cli import app
from smarttuner.evaluate import stats
from smarttuner.evaluate.glue import (
    GLUE_TASKS,
    class_scores,
    continuation_logprobs,
    evaluate_glue,
    expanded_words,
    get_glue_task,
    parse_glue_tasks,
    run_glue,
)
from smarttuner.evaluate.glue_data import load_glue, parse_rows

GLUE_DIR = Path(__file__).resolve().parents[3] / "data" / "glue"
SIZES = {"cola": 20, "sts-b": 16, "mrpc": 16, "rte": 14, "wnli": 12}


def test_metrics_by_hand() -> None:
    preds, gold = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]
    # tp=2 (0, 4), fp=1 (1), fn=1 (3), tn=1 (2)
    assert stats.accuracy(preds, gold) == pytest.approx(3 / 5)
    assert stats.f1_binary(preds, gold) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # 4/6
    # mcc = (2*1 - 1*1) / sqrt(3 * 3 * 2 * 2) = 1/6
    assert stats.matthews_corrcoef(preds, gold) == pytest.approx(1 / 6)
    assert stats.matthews_corrcoef([1, 1, 1], [1, 0, 1]) == 0.0  # constant prediction
    # pearson of y = 2x + 1 is 1; of reversed is -1
    assert stats.pearson([1, 2, 3], [3, 5, 7]) == pytest.approx(1.0)
    assert stats.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert stats.pearson([1, 1, 1], [1, 2, 3]) is None
    # ranks with a tie: 10 -> 1, 20, 20 -> 2.5 each, 30 -> 4
    assert stats.ranks([20, 10, 30, 20]) == [2.5, 1.0, 4.0, 2.5]
    # spearman is pearson of ranks: monotone but not linear -> 1
    assert stats.spearman([1, 2, 3, 4], [1, 4, 9, 100]) == pytest.approx(1.0)
    # x ranks [1,2,3,4], y = [1, 3, 2, 4] ranks: d = [0,1,-1,0], 1 - 6*2/(4*15) = 0.8
    assert stats.spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)


def test_task_names_and_label_words() -> None:
    assert [t.name for t in parse_glue_tasks("CoLA, STS-B,stsb,mrpc")] == ["cola", "sts-b", "mrpc"]
    assert [t.name for t in parse_glue_tasks("all")] == list(GLUE_TASKS)
    with pytest.raises(ValueError, match="unknown GLUE task 'sst2'.*cola, sts-b"):
        get_glue_task("sst2")
    words, owner = expanded_words(get_glue_task("cola"))
    assert words == ["no", "No", "unacceptable", "Unacceptable", "yes", "Yes", "acceptable",
                     "Acceptable"]  # fmt: skip
    assert owner == [0, 0, 0, 0, 1, 1, 1, 1]
    assert expanded_words(get_glue_task("sts-b"))[0] == ["0", "1", "2", "3", "4", "5"]


def test_shipped_files_parse_in_glue_layout() -> None:
    for name, size in SIZES.items():
        examples = load_glue(get_glue_task(name), GLUE_DIR)
        assert len(examples) == size, name
        assert all(e.text_a for e in examples)
        assert all((e.text_b is not None) == (name != "cola") for e in examples)
    cola = load_glue(get_glue_task("cola"), GLUE_DIR)
    assert [e.label for e in cola[:2]] == [1, 0]
    assert cola[16].text_a == 'He said that he would call "soon".'  # quotes kept (no quoting)
    rte = load_glue(get_glue_task("rte"), GLUE_DIR)
    assert {e.label for e in rte} == {0, 1} and rte[0].label == 0  # "entailment" -> 0
    stsb = load_glue(get_glue_task("sts-b"), GLUE_DIR, max_samples=3)
    assert [e.label for e in stsb] == [4.8, 4.2, 3.8]


def test_csv_export_and_bad_files(tmp_path: Path) -> None:
    folder = tmp_path / "MRPC"
    folder.mkdir()
    (folder / "dev.csv").write_text(
        'sentence1,sentence2,label,idx\n"A, b.",A b.,1,0\nC.,D.,0,1\nE.,F.,-1,2\n'
    )
    examples = load_glue(get_glue_task("mrpc"), tmp_path)
    assert [(e.text_a, e.text_b, e.label) for e in examples] == [
        ("A, b.", "A b.", 1),
        ("C.", "D.", 0),
    ]
    with pytest.raises(FileNotFoundError, match="no rte validation file"):
        load_glue(get_glue_task("rte"), tmp_path)
    with pytest.raises(ValueError, match="no label column"):
        parse_rows(
            get_glue_task("rte"), [["index", "sentence1", "sentence2"], ["0", "a", "b"]], "x"
        )
    with pytest.raises(ValueError, match="label '7' is not one of"):
        parse_rows(
            get_glue_task("wnli"), [["sentence1", "sentence2", "label"], ["a", "b", "7"]], "x"
        )


def test_hub_loading_without_datasets_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("No module named 'datasets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(ValueError, match="--glue-dir.*pip install datasets"):
        load_glue(get_glue_task("cola"))


def test_label_word_logprobs_equal_a_plain_forward(tiny_model, tiny_tokenizer) -> None:
    prompts = [[5, 17, 42, 9], [100, 7]]
    words = [[250], [3, 44, 8]]
    got = continuation_logprobs(tiny_model, prompts, words, tiny_tokenizer.pad_token_id)  # [2, 2]
    for i, prompt in enumerate(prompts):
        for j, word in enumerate(words):
            ids = torch.tensor([prompt + word])
            logprobs = tiny_model(ids).logits[0].log_softmax(-1)  # [T, V]
            expected = sum(logprobs[len(prompt) - 1 + t, tok].item() for t, tok in enumerate(word))
            assert got[i, j].item() == pytest.approx(expected, abs=1e-4)
    # a class scores log(sum of its words' probabilities)
    scores = class_scores(
        torch.tensor([[math.log(0.1), math.log(0.2), math.log(0.3)]]), [0, 1, 0], 2
    )
    torch.testing.assert_close(scores, torch.tensor([[math.log(0.4), math.log(0.2)]]))


def test_every_task_on_the_shipped_samples(tiny_model, tiny_tokenizer) -> None:
    for task in GLUE_TASKS.values():
        examples = load_glue(task, GLUE_DIR, max_samples=6)
        result = evaluate_glue(tiny_model, tiny_tokenizer, task, examples, batch_size=4)
        assert result.n == 6 and len(result.predictions) == 6
        assert set(result.metrics) == set(task.metrics)
        first = result.predictions[0]
        assert set(first["class_logprobs"]) == {c.name for c in task.classes}
        if task.regression:
            assert all(0.0 <= p["prediction"] <= 5.0 for p in result.predictions)
        else:
            assert all(p["prediction"] in (0, 1) for p in result.predictions)
            best = max(first["class_logprobs"].values())
            assert first["class_logprobs"][task.classes[first["prediction"]].name] == best
            assert 0.0 <= result.metrics["accuracy"] <= 1.0


def test_glue_command_saves_predictions(tiny_model_dir: str, tmp_path: Path) -> None:
    preds = tmp_path / "preds"
    args = [
        "eval", "--model", tiny_model_dir, "--glue", "cola,sts-b", "--glue-dir", str(GLUE_DIR),
        "--max-samples", "4", "--save-predictions", str(preds),
        "--output", str(tmp_path / "g.json"), "--device", "cpu",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "mcc" in result.output and "spearman" in result.output
    for name in ("cola", "sts-b"):
        saved = json.loads((preds / f"{name}.json").read_text())
        assert saved["task"] == name and len(saved["predictions"]) == 4
    summary = json.loads((tmp_path / "g.json").read_text())
    assert set(summary["tasks"]) == {"cola", "sts-b"} and summary["tasks"]["cola"]["n"] == 4
    missing = CliRunner().invoke(
        app, ["eval", "--model", tiny_model_dir, "--glue", "rte", "--glue-dir", str(tmp_path)]
    )
    assert missing.exit_code == 2 and "no rte validation file" in missing.output


def test_run_glue_checks_data_before_loading_the_model(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run_glue("no-such-model", "wnli", data_dir=tmp_path)
    with pytest.raises(ValueError, match="max_samples must be >= 1"):
        run_glue("no-such-model", "wnli", data_dir=GLUE_DIR, max_samples=0)
