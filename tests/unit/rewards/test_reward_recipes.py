"""The three recipes of issue 4 load as GRPO configs, and their tasks and rewards build (the
scorer and reward models swapped for tiny ones: nothing runs the bundled model here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import LlamaConfig, LlamaForSequenceClassification

from smarttuner.config import GRPOConfig, build_config
from smarttuner.rewards import build_reward
from smarttuner.tasks import get_task

ROOT = Path(__file__).resolve().parents[3]
RECIPES = ["gsm8k_math.yaml", "reward_model.yaml", "cola_completion.yaml"]


@pytest.fixture(scope="module")
def tiny_reward_model_dir(tmp_path_factory, tiny_tokenizer) -> str:
    path = tmp_path_factory.mktemp("tiny-rm")
    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_labels=1,
        pad_token_id=tiny_tokenizer.pad_token_id,
    )
    LlamaForSequenceClassification(config).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_loads_and_builds(
    recipe: str, monkeypatch, tiny_model_dir: str, tiny_reward_model_dir: str
) -> None:
    monkeypatch.chdir(ROOT)  # recipes name data files relative to the repository
    cfg = build_config(GRPOConfig, ROOT / "configs" / recipe)
    params = dict(cfg.task.params)
    params.pop("tokenizer", None)  # would convert the bundled model's tokenizer
    if cfg.task.name == "gsm8k":
        params["source"] = "gsm_symbolic"  # what `auto` is offline, without asking the hub
    task = get_task(cfg.task.name, **params)
    assert task.examples(cfg.task.dataset_seed, 2)
    swap = {"perplexity": tiny_model_dir, "reward_model": tiny_reward_model_dir}
    for spec in cfg.rewards:
        spec_params = dict(spec.params)
        if spec.name in swap:
            spec_params.update(model=swap[spec.name], device="cpu")
        if spec.name == "embedding_similarity":
            pytest.importorskip("sentence_transformers")
            spec_params["device"] = "cpu"
        assert callable(build_reward(spec.name, task, spec_params))


def test_recipes_use_the_output_format_of_their_task() -> None:
    gsm8k = build_config(GRPOConfig, ROOT / "configs" / "gsm8k_math.yaml")
    assert not gsm8k.generation.stop_at_answer  # the answer ends with </SOLUTION>
    cola = build_config(GRPOConfig, ROOT / "configs" / "cola_completion.yaml")
    assert cola.generation.max_new_tokens == cola.task.params["completion_tokens"] == 4
