"""GRPO and the rollout engines on the real bundled SmolLM2-135M-Instruct (offline, CPU).

Slower than the unit tests (the model is 135M parameters): run with `pytest -m integration`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from smarttuner.config import BUNDLED_MODEL, GRPOConfig, ModelConfig, build_config
from smarttuner.formatting import ANSWER_CLOSE
from smarttuner.grpo.trainer import train_grpo
from smarttuner.models import load_model, resolve_model_path
from smarttuner.prompts import context_length, encode_prompts
from smarttuner.rollout import SamplingParams
from smarttuner.rollout.fast import generate_fast
from smarttuner.rollout.hf import generate_hf
from smarttuner.tasks import get_task

pytestmark = pytest.mark.integration


def test_one_grpo_iteration_on_the_bundled_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = build_config(
        GRPOConfig,
        None,
        {
            "task.name": "syllogism",
            "task.num_train_examples": 50,
            "num_iterations": 1,
            "grpo.exploration_batchsize": 2,
            "grpo.num_generations": 2,
            "optim.batch_size": 4,
            "optim.gradient_accumulation_steps": 1,
            "generation.max_new_tokens": 24,
            "eval.num_examples": 2,
            "output_dir": str(out),
        },
    )
    assert cfg.model.name == BUNDLED_MODEL  # the default model
    model, tokenizer = load_model(cfg.model, cfg.lora)
    results = train_grpo(cfg, model=model, tokenizer=tokenizer)

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    grpo = [r for r in records if r["phase"] == "grpo"]
    assert len(grpo) == 1
    for key in ("loss", "reward_mean", "kl", "clip_fraction", "completion_length"):
        assert grpo[0][key] is not None and math.isfinite(grpo[0][key]), key
    assert "baseline" in results and "final" in results
    assert results["optimizer_steps"] == 1

    # the saved adapter reloads on the cached base with plain transformers + peft and gives
    # the in-memory model's logits
    base = AutoModelForCausalLM.from_pretrained(resolve_model_path(BUNDLED_MODEL))
    reloaded = PeftModel.from_pretrained(base, out / "model").eval()
    ids = tokenizer("All cats are animals. Are some animals cats?", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded(input_ids=ids).logits, model.eval()(input_ids=ids).logits, atol=1e-5, rtol=0
        )


@pytest.mark.parametrize("stops", [(), (ANSWER_CLOSE,)])
def test_fast_and_hf_engines_agree_on_the_bundled_model(stops: tuple[str, ...]) -> None:
    model, tokenizer = load_model(ModelConfig(name=BUNDLED_MODEL), trainable=False)
    model.eval()
    task = get_task("syllogism")
    examples = task.examples(seed=7, n=2)
    prompts = encode_prompts(
        tokenizer, [e.question for e in examples], task.system_prompt, 24, context_length(model)
    )
    params = SamplingParams(max_new_tokens=24, temperature=0.0, stop_strings=stops)
    fast = generate_fast(model, tokenizer, prompts, 2, params)
    hf = generate_hf(model, tokenizer, prompts, 2, params)
    assert torch.equal(fast.completion_ids, hf.completion_ids)
    assert torch.equal(fast.completion_mask, hf.completion_mask)
    assert torch.equal(fast.truncated, hf.truncated)
    assert fast.texts == hf.texts
    assert fast.texts[0] == fast.texts[1] and fast.texts[2] == fast.texts[3]  # greedy groups
