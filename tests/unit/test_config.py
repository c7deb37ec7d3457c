"""The GRPO config: the seed recipe's defaults, YAML + dotted overrides, and validation errors
that are one line naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from smarttuner.config import (
    BUNDLED_MODEL,
    ConfigError,
    GRPOConfig,
    RewardSpec,
    build_config,
    dump_config,
    parse_override,
    read_yaml,
    set_dotted,
)


def test_defaults_are_the_seed_recipe() -> None:
    cfg = GRPOConfig()
    assert cfg.model.name == BUNDLED_MODEL == "smollm2-135m-instruct"
    assert cfg.generation.max_new_tokens == 300
    assert cfg.generation.temperature == 0.7
    assert cfg.generation.top_p == 0.95
    assert cfg.grpo.exploration_batchsize == 8
    assert cfg.grpo.num_generations == 6
    assert cfg.grpo.buffer_size == 500
    assert cfg.optim.batch_size == 16
    assert cfg.optim.gradient_accumulation_steps == 12
    assert cfg.optim.learning_rate == 1e-6
    assert cfg.lora.enabled is True
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (32, 64, 0.0)
    assert set(cfg.lora.target_modules) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "up_proj",
        "down_proj",
        "gate_proj",
    }
    assert [(r.name, r.weight) for r in cfg.rewards] == [("correctness", 0.85), ("format", 0.15)]
    assert cfg.task.name == "syllogism"


def test_every_leaf_field_has_help_text() -> None:
    def walk(model_cls: type[BaseModel], prefix: str = "") -> None:
        for name, field in model_cls.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
            elif name != "rewards":
                assert field.description, f"{prefix}{name} has no description"

    walk(GRPOConfig)
    walk(RewardSpec, "rewards[].")


def test_rewards_field_has_help_text() -> None:
    assert GRPOConfig.model_fields["rewards"].description


def test_default_lists_are_not_shared() -> None:
    a, b = GRPOConfig(), GRPOConfig()
    a.lora.target_modules.append("lm_head")
    assert "lm_head" not in b.lora.target_modules


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


RECIPE = """
model:
  name: some/model
grpo:
  beta: 0.0
  num_generations: 4
  exploration_batchsize: 4
optim:
  batch_size: 8
  learning_rate: 1.0e-5
rewards:
  - name: format
    weight: 1.0
  - name: my_mod:fn
    weight: 0.5
    params: {scale: 2}
"""


def test_yaml_recipe_and_dotted_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE)
    cfg = build_config(
        GRPOConfig,
        path,
        {"grpo.beta": 0.02, "optim.learning_rate": None, "generation.top_p": 0.9, "seed": 3},
    )
    assert cfg.model.name == "some/model"
    assert cfg.grpo.beta == 0.02  # override wins over the recipe
    assert cfg.optim.learning_rate == 1e-5  # a None override is ignored
    assert cfg.grpo.num_generations == 4
    assert cfg.generation.top_p == 0.9
    assert cfg.generation.max_new_tokens == 300  # untouched default
    assert cfg.seed == 3
    assert cfg.rewards[1].name == "my_mod:fn" and cfg.rewards[1].params == {"scale": 2}


def test_command_line_overrides_are_parsed_as_yaml() -> None:
    assert parse_override("grpo.beta=0.02") == ("grpo.beta", 0.02)
    assert parse_override("lora.enabled=false") == ("lora.enabled", False)
    assert parse_override("lora.target_modules=[q_proj, v_proj]") == (
        "lora.target_modules",
        ["q_proj", "v_proj"],
    )
    assert parse_override(" task.name = arithmetic") == ("task.name", "arithmetic")
    assert parse_override("model.name=a=b") == ("model.name", "a=b")
    assert parse_override("output_dir=") == ("output_dir", "")
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_override("grpo.beta")


def test_overrides_from_strings_validate_types() -> None:
    overrides = dict(
        parse_override(s)
        for s in [
            "optim.learning_rate=1e-4",
            "grpo.num_generations=4",
            "task.params={min_value: 2}",
        ]
    )
    cfg = build_config(GRPOConfig, None, overrides)
    assert cfg.optim.learning_rate == 1e-4
    assert cfg.grpo.num_generations == 4
    assert cfg.task.params == {"min_value": 2}


def test_set_dotted() -> None:
    data: dict = {"grpo": {"beta": 0.1}}
    set_dotted(data, "grpo.mu", 2)
    set_dotted(data, "eval.num_examples", 5)
    assert data == {"grpo": {"beta": 0.1, "mu": 2}, "eval": {"num_examples": 5}}
    with pytest.raises(ConfigError, match="'beta' is not a config section"):
        set_dotted(data, "grpo.beta.x", 1)


def test_malformed_yaml_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "grpo:\n  beta: [0.1\n  mu: 2\n", "broken.yaml")
    with pytest.raises(ConfigError) as info:
        build_config(GRPOConfig, path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "malformed YAML" in message
    assert "line" in message


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must hold a mapping.*list"):
        read_yaml(write(tmp_path, "- a\n- b\n"))
    assert read_yaml(write(tmp_path, "", "empty.yaml")) == {}


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        build_config(GRPOConfig, tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"grpo.betta": 0.1}, r"grpo\.betta: Extra inputs are not permitted"),
        ({"trainer": {"lr": 1}}, "trainer: Extra inputs are not permitted"),
        ({"optim.batch_size": 5}, r"optim\.batch_size=5 must divide .* 8 × 6 = 48"),
        ({"grpo.epsilon_high": 0.1}, r"grpo\.epsilon_high=0\.1 must be >= grpo\.epsilon=0\.2"),
        ({"grpo.buffer_size": 10}, r"grpo\.buffer_size=10 cannot hold .* 48"),
        ({"grpo.refill_rounds": 2}, r"grpo\.refill_rounds=2 needs grpo\.skip_zero_std_groups"),
        ({"rewards": []}, "at least one reward"),
        ({"grpo.num_generations": 1}, r"grpo\.num_generations"),
        ({"generation.top_p": 1.5}, r"generation\.top_p"),
        ({"generation.min_new_tokens": 301}, r"generation: .*min_new_tokens=301 exceeds .*=300"),
        ({"grpo.loss_type": "ppo"}, r"grpo\.loss_type"),
        ({"model.device": "tpu"}, r"model\.device"),
        ({"optim.learning_rate": 0}, r"optim\.learning_rate"),
    ],
)
def test_invalid_configs_name_the_field(overrides: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        build_config(GRPOConfig, None, overrides)
    assert "\n" not in str(info.value)


def test_unknown_key_in_a_yaml_recipe(tmp_path: Path) -> None:
    path = write(tmp_path, "optim:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        build_config(GRPOConfig, path)


def test_valid_combinations() -> None:
    cfg = build_config(
        GRPOConfig,
        None,
        {
            "grpo.exploration_batchsize": 2,
            "grpo.num_generations": 4,
            "grpo.buffer_size": 8,
            "optim.batch_size": 4,
            "grpo.epsilon_high": 0.28,
        },
    )
    assert cfg.grpo.epsilon_high == 0.28
    # epsilon_high equal to epsilon is allowed
    build_config(GRPOConfig, None, {"grpo.epsilon_high": 0.2})


def test_dump_config_round_trips(tmp_path: Path) -> None:
    cfg = build_config(GRPOConfig, write(tmp_path, RECIPE), {"output_dir": str(tmp_path / "o")})
    dump_config(cfg, tmp_path / "config.yaml")
    again = build_config(GRPOConfig, tmp_path / "config.yaml")
    assert again == cfg


RECIPES = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in RECIPES.glob("*.yaml") if p.name != "reward_model_train.yaml"),
)
def test_shipped_recipes_validate(name: str) -> None:
    """Every recipe under configs/ builds the config its command reads (pipeline recipes have
    SFT and probe sections; the others are `smarttuner grpo` recipes)."""
    from smarttuner.config import PipelineConfig

    path = RECIPES / name
    cls = PipelineConfig if "sft" in read_yaml(path) else GRPOConfig
    cfg = build_config(cls, path)
    assert cfg.task.name


def test_shipped_reward_model_recipe_validates() -> None:
    from smarttuner.reward_model.config import RewardModelConfig

    cfg = build_config(RewardModelConfig, RECIPES / "reward_model_train.yaml")
    assert cfg is not None
