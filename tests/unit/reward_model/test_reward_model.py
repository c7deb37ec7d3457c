"""Reward models: the Bradley–Terry loss, preference pairs (JSONL, hub rows, task-made), a
tiny reward model trained to clearly better than chance on held-out pairs, saved, reloaded and
used by the `reward_model` reward, and the `reward-model train` command."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification
from typer.testing import CliRunner

from smarttuner.config import ConfigError, build_config
from smarttuner.reward_model import RewardModelConfig, train_reward_model
from smarttuner.reward_model.config import PairDataSettings
from smarttuner.reward_model.data import (
    PreferencePair,
    map_hub_row,
    read_jsonl_pairs,
    split_pairs,
    task_pairs,
    wrong_answer,
)
from smarttuner.reward_model.loss import bradley_terry_loss, pairwise_accuracy
from smarttuner.reward_model.scoring import score_pairs
from smarttuner.rewards import NamedReward, build_reward, compute_rewards
from smarttuner.tasks import Example
from smarttuner.tasks.arithmetic import ArithmeticTask
from smarttuner.tasks.gsm8k import GSM8KTask

ROOT = Path(__file__).resolve().parents[3]
# Every question is "(2 + 2) + 2": the chosen answer is always 6, the rejected ones vary.
# A fixed distinguishing token, so a 2-layer model learns the preference in a few steps.
LEARNABLE = {"min_value": 2, "max_value": 2, "ops": ["+"]}


def tiny_classifier(tokenizer, seed: int = 3) -> LlamaForSequenceClassification:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForSequenceClassification(config)


def test_bradley_terry_loss_by_hand() -> None:
    chosen, rejected = torch.tensor([0.0, 2.0]), torch.tensor([0.0, 0.0])
    # pair 1: −log σ(0) = log 2 = 0.693147; pair 2: −log σ(2) = log(1 + e^−2) = 0.126928
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(
        (math.log(2) + math.log(1 + math.exp(-2))) / 2
    )
    assert pairwise_accuracy(chosen, rejected) == 0.5  # a tie is not a win
    assert pairwise_accuracy(rejected, chosen) == 0.0


def test_wrong_answers() -> None:
    rng = random.Random(0)
    pool = [Example("q1", "Paris"), Example("q2", "Rome")]
    for gold in ["14", "-3", "0"]:
        wrong = wrong_answer(Example("q", gold), pool, rng)
        assert wrong != gold and 0 < abs(int(wrong) - int(gold)) <= 10
    assert float(wrong_answer(Example("q", "7.5"), pool, rng)) in (3.75, 5.625, 9.375, 11.25)
    assert wrong_answer(Example("q", "Yes"), pool, rng) == "No"
    assert wrong_answer(Example("q", "false"), pool, rng) == "true"
    assert wrong_answer(pool[0], pool, rng) == "Rome"  # another example's answer
    assert wrong_answer(pool[0], pool[:1], rng) is None


def test_task_pairs_are_verified() -> None:
    task = ArithmeticTask()
    examples = task.examples(5, 20)
    pairs = task_pairs(task, 5, 20)
    assert len(pairs) == 20
    for pair, example in zip(pairs, examples, strict=True):
        assert pair.prompt == example.question
        assert task.is_correct(pair.chosen, example)
        assert not task.is_correct(pair.rejected, example)
        assert pair.chosen.startswith("<think>")


def test_task_pairs_use_the_tasks_own_format() -> None:
    task = GSM8KTask(path=str(ROOT / "data" / "gsm8k_sample.jsonl"))
    pairs = task_pairs(task, 0, 20, reasoning="Work it out.")
    assert len(pairs) == 20
    assert pairs[0].chosen.startswith("<start_working_out>Work it out.<end_working_out><SOLUTION>")


def test_jsonl_pairs_and_errors(tmp_path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"prompt": "p", "chosen": "good", "rejected": "bad"}\n\n')
    assert read_jsonl_pairs(path) == [PreferencePair("p", "good", "bad")]
    path.write_text('{"prompt": "p", "chosen": "good"}\n')
    with pytest.raises(ValueError, match="line 1 needs string fields"):
        read_jsonl_pairs(path)
    path.write_text("not json\n")
    with pytest.raises(ValueError, match="line 1 is not valid JSON"):
        read_jsonl_pairs(path)
    with pytest.raises(FileNotFoundError):
        read_jsonl_pairs(tmp_path / "missing.jsonl")


def test_orca_dpo_pairs_columns_are_mapped() -> None:
    settings = PairDataSettings(source="hub")  # Intel/orca_dpo_pairs defaults
    row = {"system": "You are helpful.", "question": "2+2?", "chosen": "4", "rejected": "5"}
    assert map_hub_row(row, settings) == PreferencePair("You are helpful.\n\n2+2?", "4", "5")
    assert map_hub_row({**row, "system": ""}, settings).prompt == "2+2?"


def test_split_pairs() -> None:
    pairs = [PreferencePair(str(i), "c", "r") for i in range(10)]
    train, val = split_pairs(pairs, 0.25, seed=0)
    assert (len(train), len(val)) == (8, 2)  # round(2.5) = 2
    assert {p.prompt for p in train}.isdisjoint({p.prompt for p in val})
    train, val = split_pairs(pairs[:2], 0.01, seed=0)
    assert (len(train), len(val)) == (1, 1)


def config(tmp_path, **train) -> RewardModelConfig:
    return RewardModelConfig.model_validate(
        {
            "data": {
                "source": "task",
                "task": "arithmetic",
                "task_params": LEARNABLE,
                "num_pairs": 64,
                "val_fraction": 0.25,
                "reasoning": "Step by step.",
            },
            "lora": {"r": 8, "alpha": 16},
            "train": {"learning_rate": 5e-3, "batch_size": 8, "max_steps": 25, "log_every": 5}
            | train,
            "output_dir": str(tmp_path / "rm"),
        }
    )


def test_trained_reward_model_beats_chance_and_serves_as_a_reward(tmp_path, tiny_tokenizer):
    cfg = config(tmp_path)
    results = train_reward_model(
        cfg, model=tiny_classifier(tiny_tokenizer), tokenizer=tiny_tokenizer
    )
    assert results["num_val_pairs"] == 16 and results["num_train_pairs"] == 48
    assert results["val_accuracy_before"] < 0.6  # this initialisation starts near chance
    assert results["val_accuracy"] >= 0.9
    assert results["train_loss_last"] < 0.2 < 0.6 < results["train_loss_first"]
    out = tmp_path / "rm"
    assert json.loads((out / "results.json").read_text()) == results
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 5
    assert (out / "model" / "config.json").is_file()
    assert not (out / "model" / "adapter_config.json").exists()  # LoRA merged: a plain folder

    # the saved folder is what the reward loads; used in one (GRPO-style) reward call
    fn = build_reward("reward_model", None, {"model": str(out / "model"), "device": "cpu"})
    question = "Calculate (2 + 2) + 2. Give the final answer as a single integer."
    good = "<think> Step by step. </think><answer> 6 </answer>"
    bad = "<think> Step by step. </think><answer> 9 </answer>"
    result = compute_rewards(
        [NamedReward("reward_model", 1.0, fn)],
        prompts=["<rendered prompt>"] * 2,
        completions=[good, bad],
        question=[question, question],
    )
    scores = result.components["reward_model"]
    assert scores[0] > scores[1]
    normalized = build_reward(
        "reward_model", None, {"model": str(out / "model"), "device": "cpu", "normalize": True}
    )
    z = normalized(prompts=["p"] * 2, completions=[good, bad], question=[question] * 2)
    assert z[0] == pytest.approx(-z[1]) and z[0] > 0


def test_adapter_and_merged_folders_score_alike(tmp_path, tiny_model_dir) -> None:
    # the same run twice from a causal-LM folder (fresh seeded score head): saved as a LoRA
    # adapter, and merged into a plain folder; the reward loads either and they agree
    scores = []
    for merge in (False, True):
        cfg = config(tmp_path / str(merge), max_steps=3, merge_lora=merge)
        cfg.model.name = tiny_model_dir
        model_dir = Path(train_reward_model(cfg)["model_dir"])
        assert (model_dir / "adapter_config.json").is_file() is not merge
        fn = build_reward("reward_model", None, {"model": str(model_dir), "device": "cpu"})
        scores.append(fn(prompts=["p"] * 2, completions=["<answer> 6 </answer>", "x"]))
    assert scores[0] == pytest.approx(scores[1], abs=1e-4)


def test_saved_full_model_reloads_with_the_same_scores(tmp_path, tiny_tokenizer) -> None:
    cfg = config(tmp_path, max_steps=3)
    cfg.lora.enabled = False
    model = tiny_classifier(tiny_tokenizer)
    results = train_reward_model(cfg, model=model, tokenizer=tiny_tokenizer)
    fn = build_reward("reward_model", None, {"model": results["model_dir"], "device": "cpu"})
    prompts, completions = ["a question", "another"], ["an answer", "<answer> 6 </answer>"]
    expected = score_pairs(model, tiny_tokenizer, prompts, completions)
    assert fn(prompts=prompts, completions=completions) == pytest.approx(expected, abs=1e-5)


def test_reward_params_are_checked() -> None:
    with pytest.raises(ValueError, match="needs params.model"):
        build_reward("reward_model", None, {})
    with pytest.raises(ValueError, match="unknown parameter"):
        build_reward("reward_model", None, {"model": "x", "normalise": True})
    with pytest.raises(Exception, match="cannot load reward model"):
        build_reward("reward_model", None, {"model": "/no/such/dir", "device": "cpu"})


def test_config_recipe_and_validation(tmp_path) -> None:
    cfg = build_config(RewardModelConfig, ROOT / "configs" / "reward_model_train.yaml")
    assert cfg.data.source == "task" and cfg.lora.enabled
    with pytest.raises(ConfigError, match="data.path is required"):
        build_config(RewardModelConfig, None, {"data.source": "jsonl"})
    with pytest.raises(ConfigError, match="val_fraction"):
        build_config(RewardModelConfig, None, {"data.val_fraction": 0})


def test_cli_trains_from_a_causal_lm_folder(tmp_path, tiny_model_dir) -> None:
    from smarttuner.cli import app

    pairs = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"q{i}", "chosen": "good answer", "rejected": "bad"} for i in range(6)]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "cli-rm"
    args = ["reward-model", "train", "--model", tiny_model_dir, "--source", "jsonl"]
    args += ["--path", str(pairs), "--full", "-o", str(out)]
    args += ["-s", "train.max_steps=2", "-s", "train.batch_size=2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "held-out pairwise accuracy" in result.output
    saved = json.loads((out / "results.json").read_text())
    assert saved["num_train_pairs"] + saved["num_val_pairs"] == 6
    again = CliRunner().invoke(app, args)  # refuses a non-empty output dir: one line, exit 2
    assert again.exit_code == 2 and "not empty" in again.output
