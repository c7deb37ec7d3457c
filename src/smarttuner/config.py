"""Typed, validated configuration: one pydantic model per command, loadable from a YAML
recipe under `configs/` and overridable from the command line with dotted keys
(`--set grpo.beta=0.02`).

Every field carries a one-line help text; algorithm knobs cite where they come from.
Unknown keys are errors (a typo in a recipe must not silently fall back to a default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

BUNDLED_MODEL = "smollm2-135m-instruct"
DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj"]


def _validate_report_to(value: list[str]) -> list[str]:
    from smarttuner.tracking import check_report_to  # names a missing package and its extra

    return check_report_to(value)


def autocast_for_device(setting: str, device: str) -> str:
    """`setting` resolved for `device` (a config's device name, `auto` included) by
    `precision.resolve_autocast`: `auto` becomes bfloat16 or none for this machine."""
    from smarttuner.precision import resolve_autocast

    if device == "auto" and setting in ("auto", "bfloat16"):  # only these depend on the device
        from smarttuner.models import resolve_device  # (loads transformers)

        device = resolve_device("auto").type
    return resolve_autocast(setting, device)


class ConfigError(ValueError):
    """A recipe or override that cannot become a valid config (one line, names the field)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# model.autocast and `smarttuner eval --autocast`; "auto" is resolved on load (resolve_autocast)
Autocast = Literal["auto", "none", "bfloat16", "float16"]


class ModelConfig(_Section):
    name: str = Field(
        BUNDLED_MODEL,
        description="Hugging Face hub id, local model or PEFT adapter directory, or the bundled "
        f"alias '{BUNDLED_MODEL}'.",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="Where to run; auto picks CUDA, then MPS, then CPU."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Weight dtype; auto is float32 on CPU and bfloat16 on GPUs that have it.",
    )
    trust_remote_code: bool = Field(False, description="Allow custom model code from the hub.")
    autocast: Autocast = Field(
        "none",
        description="Run matmuls in this dtype under torch.autocast (weights stay in `dtype`); "
        "bfloat16 is ~2x faster training on CPUs with AVX512-BF16/AMX and several times slower "
        "on CPUs without (see docs/RESULTS.md); auto: bfloat16 on a CPU with native bf16, else "
        "none. The config a run writes holds the resolved value.",
    )
    load_in_4bit: bool = Field(
        False,
        description="QLoRA (Dettmers et al. 2023): load the base weights as 4-bit NF4 through "
        "bitsandbytes (CUDA GPU, extra smarttuner[qlora]) and train LoRA on top; see docs/gpu.md.",
    )

    @field_validator("autocast")
    @classmethod
    def _resolve_autocast(cls, value: str, info: ValidationInfo) -> str:
        return autocast_for_device(value, info.data.get("device", "auto"))


class LoraSettings(_Section):
    enabled: bool = Field(True, description="Train a LoRA adapter (False: full fine-tuning).")
    r: int = Field(32, ge=1, description="LoRA rank (Hu et al. 2021).")
    alpha: int = Field(64, ge=1, description="LoRA scaling numerator; scale = alpha / r.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA branch.")
    target_modules: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS),
        description="Module names that get LoRA adapters.",
    )


class TaskSettings(_Section):
    name: str = Field("syllogism", description="Registered task or any reasoning-gym dataset name.")
    dataset_seed: int = Field(42, description="Seed of the training prompts.")
    eval_seed: int = Field(123, description="Seed of the held-out evaluation prompts.")
    num_train_examples: int = Field(
        2000, ge=1, description="Size of the training prompt pool (cycled through in order)."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Task-specific options (e.g. reasoning-gym config)."
    )
    balance_answers: bool = Field(
        False,
        description="Train on equally many prompts per gold answer (yes/no tasks: half each), "
        "so always giving the majority answer earns no advantage.",
    )


class RewardSpec(_Section):
    name: str = Field(..., description="Registered reward name, or 'module:function' of your own.")
    weight: float = Field(1.0, description="Weight in the summed reward (0 still logs it).")
    params: dict[str, Any] = Field(default_factory=dict, description="Options of this reward.")


def default_rewards() -> list[RewardSpec]:
    return [RewardSpec(name="correctness", weight=0.85), RewardSpec(name="format", weight=0.15)]


class GenerationSettings(_Section):
    max_new_tokens: int = Field(300, ge=1, description="Longest completion sampled.")
    temperature: float = Field(0.7, ge=0.0, description="Sampling temperature (0 = greedy).")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    stop_at_answer: bool = Field(
        True, description="Stop a completion at '</answer>' as well as EOS."
    )
    min_new_tokens: int = Field(
        0,
        ge=0,
        description="EOS cannot be sampled before this many tokens (transformers' "
        "min_new_tokens, vLLM's min_tokens); stop strings still end a completion.",
    )
    engine: Literal["auto", "fast", "hf", "vllm"] = Field(
        "auto",
        description="Rollout engine: 'fast' (SmartTuner's KV-cache decode loop, one prefill per "
        "group), 'hf' (transformers generate), 'vllm' (vLLM on one CUDA GPU, extra "
        "smarttuner[vllm]; see docs/gpu.md); auto = fast.",
    )
    policy_copy: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Sample GRPO rollouts and evaluations from a merged copy of the policy "
        "(LoRA folded in) stored in the autocast dtype, refreshed before each rollout: no "
        "per-step weight casts or adapter matmuls in the decode loop. auto = on when "
        "model.autocast is set and the engine is fast/hf; costs one model of memory.",
    )

    @model_validator(mode="after")
    def _check_lengths(self) -> GenerationSettings:
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(
                f"min_new_tokens={self.min_new_tokens} exceeds max_new_tokens={self.max_new_tokens}"
            )
        return self


class CurriculumStage(_Section):
    num_examples: int = Field(
        ...,
        ge=1,
        description="Prompts of this stage: num_examples / exploration_batchsize iterations.",
    )
    level: int | None = Field(
        None,
        ge=0,
        description="reasoning-gym curriculum level of the task (its difficulty ladder).",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Task parameters of this stage, over task.params and level.",
    )

    @model_validator(mode="after")
    def _check_has_difficulty(self) -> CurriculumStage:
        if self.level is None and not self.params:
            raise ValueError("a curriculum stage needs a level, params, or both")
        return self


class GRPOSettings(_Section):
    num_generations: int = Field(
        6, ge=2, description="G: completions per prompt (Shao et al. 2024, DeepSeekMath)."
    )
    exploration_batchsize: int = Field(8, ge=1, description="Prompts sampled per iteration.")
    buffer_size: int = Field(
        500, ge=1, description="Experience buffer capacity in completions (oldest evicted first)."
    )
    mu: int = Field(
        1, ge=1, description="μ: inner optimisation passes per iteration (GRPO alg. 1)."
    )
    epsilon: float = Field(0.2, gt=0.0, description="Lower PPO clip range (Schulman et al. 2017).")
    epsilon_high: float | None = Field(
        None, description="Upper clip range; > epsilon is DAPO's clip-higher. None = epsilon."
    )
    beta: float = Field(
        0.04, ge=0.0, description="KL coefficient (k3 estimator); 0 skips the reference model."
    )
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = Field(
        "grpo",
        description="Loss aggregation: grpo (per-sequence mean), dr_grpo (Liu et al. 2025, "
        "constant normaliser), dapo (Yu et al. 2025, token mean over the accumulated batch), "
        "bnpo (token mean per minibatch).",
    )
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="Divide advantages by the group std, the batch std, or nothing."
    )
    advantage_epsilon: float = Field(1e-4, gt=0.0, description="Added to the std before dividing.")
    skip_zero_std_groups: bool = Field(
        False, description="Drop groups whose rewards are all equal (DAPO dynamic sampling)."
    )
    refill_rounds: int = Field(
        0,
        ge=0,
        description="With skip_zero_std_groups: sample up to this many more batches of "
        "exploration_batchsize prompts per iteration until that many groups with unequal "
        "rewards are kept (DAPO's max_num_gen_batches - 1); 0: train on what one batch kept.",
    )
    curriculum: list[CurriculumStage] = Field(
        default_factory=list,
        description="Easier prompts walked before the task's own pool, stage by stage "
        "(tasks/curriculum.py); empty: no curriculum.",
    )
    blame: Literal["sequence", "first_false_equation"] = Field(
        "sequence",
        description="Tokens a negative advantage applies to: the whole completion (the paper), "
        "or only from the first false `A = B` step of the reasoning on (grpo/credit.py).",
    )


class OptimSettings(_Section):
    learning_rate: float = Field(1e-6, gt=0.0, description="AdamW peak learning rate.")
    batch_size: int = Field(16, ge=1, description="Completions per training minibatch.")
    gradient_accumulation_steps: int = Field(
        12, ge=1, description="Minibatches per optimizer step."
    )
    max_grad_norm: float = Field(1.0, gt=0.0, description="Gradient-norm clipping threshold.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    adam_beta1: float = Field(0.9, ge=0.0, lt=1.0, description="AdamW beta1.")
    adam_beta2: float = Field(0.99, ge=0.0, lt=1.0, description="AdamW beta2.")
    lr_scheduler: Literal["constant", "linear", "cosine"] = Field(
        "constant", description="Learning-rate schedule after warm-up."
    )
    warmup_steps: int = Field(0, ge=0, description="Optimizer steps of linear warm-up.")


class EvalSettings(_Section):
    num_examples: int = Field(100, ge=1, description="Held-out prompts scored per evaluation.")
    every: int = Field(0, ge=0, description="Evaluate every N iterations (0: start and end only).")
    batch_size: int = Field(32, ge=1, description="Prompts decoded together during evaluation.")
    max_new_tokens: int | None = Field(
        None, ge=1, description="Completion budget at evaluation (None: generation.max_new_tokens)."
    )
    baseline: bool = Field(True, description="Evaluate the starting model before training.")


class _TrackedRun(_Section):
    """Fields every training command shares."""

    report_to: list[str] = Field(
        default_factory=list,
        description="Tracking backends besides metrics.jsonl: tensorboard, wandb, trackio.",
    )

    @field_validator("report_to")
    @classmethod
    def _check_report_to(cls, value: list[str]) -> list[str]:
        return _validate_report_to(value)


class GRPOConfig(_TrackedRun):
    """Everything `smarttuner grpo` needs."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    task: TaskSettings = Field(default_factory=TaskSettings)
    rewards: list[RewardSpec] = Field(
        default_factory=default_rewards,
        description="Weighted rewards summed per completion: {name, weight, params} entries.",
    )
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    grpo: GRPOSettings = Field(default_factory=GRPOSettings)
    optim: OptimSettings = Field(default_factory=OptimSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    num_iterations: int = Field(100, ge=1, description="GRPO iterations (rollout + training).")
    seed: int = Field(
        0,
        description="Seed of sampling, minibatch shuffling and initialisation; the prompts "
        "are walked in task.dataset_seed order whatever the seed.",
    )
    output_dir: Path = Field(Path("runs/grpo"), description="Where everything of the run goes.")
    overwrite: bool = Field(False, description="Allow writing into a non-empty output directory.")
    log_completions_every: int = Field(
        1, ge=0, description="Write sample completions every N iterations (0: never)."
    )
    checkpoint_every: int = Field(
        5,
        ge=0,
        description="Save a resumable checkpoint every N iterations (0: only when interrupted "
        "or when a reward or task fails).",
    )
    keep_checkpoints: int = Field(
        2, ge=1, description="Complete checkpoints kept; older ones are deleted after a save."
    )
    resume: bool | Literal["auto"] = Field(
        False,
        description="Continue from the newest complete checkpoint in output_dir/checkpoints: "
        "true (one must exist), auto (when one exists, else start fresh), false (start fresh).",
    )
    max_nonfinite_in_a_row: int = Field(
        3,
        ge=1,
        description="Non-finite losses or gradient norms in a row (each skips its update) "
        "before the run stops, keeping its last good checkpoint.",
    )
    sampling_shards: int = Field(
        0,
        ge=0,
        description="Split each iteration's prompts into this many shards, each sampled with its "
        "own seed (0: one per process). Runs with the same value draw the same completions on "
        "any number of processes that divides it.",
    )

    @model_validator(mode="after")
    def _check_combinations(self) -> GRPOConfig:
        g = self.grpo
        per_iteration = g.exploration_batchsize * g.num_generations
        if self.sampling_shards and g.exploration_batchsize % self.sampling_shards:
            raise ValueError(
                f"sampling_shards={self.sampling_shards} must divide "
                f"grpo.exploration_batchsize={g.exploration_batchsize} (groups stay whole)"
            )
        if per_iteration % self.optim.batch_size:
            raise ValueError(
                f"optim.batch_size={self.optim.batch_size} must divide exploration_batchsize × "
                f"num_generations = {g.exploration_batchsize} × {g.num_generations} = "
                f"{per_iteration}"
            )
        if g.buffer_size < per_iteration:
            raise ValueError(
                f"grpo.buffer_size={g.buffer_size} cannot hold one iteration's {per_iteration} "
                "completions"
            )
        if g.epsilon_high is not None and g.epsilon_high < g.epsilon:
            raise ValueError(
                f"grpo.epsilon_high={g.epsilon_high} must be >= grpo.epsilon={g.epsilon}"
            )
        if g.refill_rounds and not g.skip_zero_std_groups:
            raise ValueError(
                f"grpo.refill_rounds={g.refill_rounds} needs grpo.skip_zero_std_groups=true "
                "(it refills the groups that option drops)"
            )
        if not self.rewards:
            raise ValueError("rewards: at least one reward is needed")
        return self


C = TypeVar("C", bound=BaseModel)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; malformed YAML or a non-mapping is a ConfigError naming the file."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(
            f"malformed YAML in {path}{where}: {getattr(err, 'problem', err)}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must hold a mapping of config sections, not {type(data).__name__}"
        )
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """'grpo.beta=0.02' -> ('grpo.beta', 0.02); the value is read as YAML (numbers, lists …)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set `data['a']['b'] = value` for key 'a.b', creating sections as needed."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a config section")
        node = child
    node[parts[-1]] = value


def build_config(
    cls: type[C], path: Path | None = None, overrides: dict[str, Any] | None = None
) -> C:
    """YAML recipe (optional) + dotted overrides -> a validated config of type `cls`.

    Overrides whose value is None are ignored (an unset command-line option).
    """
    data: dict[str, Any] = read_yaml(path) if path is not None else {}
    for key, value in (overrides or {}).items():
        if value is not None:
            set_dotted(data, key, value)
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"invalid config: {where + ': ' if where else ''}{message}") from None


def dump_config(config: BaseModel, path: Path) -> None:
    """Write the resolved config as YAML (the run's own record of what it did)."""
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


class TeacherSettings(_Section):
    url: str = Field("", description="Base URL of an OpenAI-compatible chat API (…/v1).")
    model: str = Field("gpt-4o-mini", description="Teacher model name at that endpoint.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the key.")
    temperature: float = Field(0.3, ge=0.0, description="Teacher sampling temperature.")
    max_tokens: int = Field(400, ge=1, description="Longest teacher answer.")
    timeout: float = Field(60.0, gt=0.0, description="Seconds per request.")


class SFTSettings(_Section):
    source: Literal["programmatic", "self_distill", "teacher", "jsonl"] = Field(
        "programmatic",
        description="Where the traces come from: written from the task's structure, the model's "
        "own verified samples, a teacher endpoint, or your JSONL file.",
    )
    num_datapoints: int = Field(240, ge=1, description="Training traces wanted.")
    path: Path | None = Field(None, description="JSONL file for source 'jsonl'.")
    num_epochs: float = Field(2.0, gt=0.0, description="Passes over the traces.")
    batch_size: int = Field(8, ge=1, description="Sequences per optimizer step.")
    micro_batch_size: int | None = Field(
        None,
        ge=1,
        description="Sequences per forward/backward pass (default: batch_size). Smaller values "
        "lower peak memory; gradients are accumulated, so the update is the same.",
    )
    learning_rate: float = Field(2e-4, gt=0.0, description="AdamW peak learning rate.")
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0, description="Share of steps warming up.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0.0, description="Gradient-norm clipping threshold.")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Share held out for validation.")
    val_eval_examples: int = Field(
        24, ge=0, description="Validation prompts decoded per epoch for accuracy and format."
    )
    samples_per_question: int = Field(
        4, ge=1, description="self_distill: completions sampled per question (k)."
    )
    distill_temperature: float = Field(
        0.8, ge=0.0, description="self_distill sampling temperature."
    )
    teacher: TeacherSettings = Field(default_factory=TeacherSettings)
    max_new_tokens: int = Field(
        200,
        ge=1,
        description="Completion budget of validation decoding and self-distillation sampling.",
    )


class SFTConfig(_TrackedRun):
    """Everything `smarttuner sft` needs."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    task: TaskSettings = Field(default_factory=TaskSettings)
    sft: SFTSettings = Field(default_factory=SFTSettings)
    eval: EvalSettings = Field(
        default_factory=EvalSettings,
        description="The held-out set whose prompts are kept out of the SFT data.",
    )
    seed: int = Field(0, description="Seed of shuffling and initialisation.")
    output_dir: Path = Field(Path("runs/sft"), description="Where everything of the run goes.")
    overwrite: bool = Field(False, description="Allow writing into a non-empty output directory.")

    @model_validator(mode="after")
    def _check_source(self) -> SFTConfig:
        if self.sft.source == "jsonl" and self.sft.path is None:
            raise ValueError("sft.path is required when sft.source is 'jsonl'")
        if self.sft.source == "teacher" and not self.sft.teacher.url:
            raise ValueError("sft.teacher.url is required when sft.source is 'teacher'")
        return self


class ProbeSettings(_Section):
    num_prompts: int = Field(8, ge=1, description="Prompts sampled by the warm-up probe.")
    k: int = Field(4, ge=2, description="Samples per prompt (pass@k, reward variance).")
    max_new_tokens: int = Field(200, ge=1, description="Completion budget of the probe.")
    min_format_rate: float = Field(0.5, ge=0.0, le=1.0, description="Below this, SFT runs.")
    min_signal: float = Field(
        0.25,
        ge=0.0,
        le=1.0,
        description="Below this share of prompts with reward variance, SFT runs.",
    )


class PipelineConfig(GRPOConfig):
    """`smarttuner pipeline`: probe → baseline eval → SFT → eval → GRPO → eval → plots.

    The GRPO fields are the top level (as in a GRPO recipe); `sft` and `probe` add the rest."""

    sft: SFTSettings = Field(default_factory=SFTSettings)
    probe: ProbeSettings = Field(default_factory=ProbeSettings)
    run_sft: Literal["auto", "always", "never"] = Field(
        "auto", description="auto: SFT only when the probe says the model needs warm-up."
    )
    run_grpo: bool = Field(
        True,
        description="false: stop after SFT and its eval (the SFT-only control of a recipe).",
    )
    output_dir: Path = Field(Path("runs/pipeline"), description="Where everything goes.")
