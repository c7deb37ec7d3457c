"""`smarttuner reward-model train`: its typed config, loadable from a YAML recipe with
`smarttuner.config.build_config(RewardModelConfig, path, overrides)`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from smarttuner.config import LoraSettings, ModelConfig

ORCA_DPO_PAIRS = "Intel/orca_dpo_pairs"
DEFAULT_REASONING = "I work through the problem step by step and check the result."


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PairDataSettings(_Section):
    source: Literal["task", "jsonl", "hub"] = Field(
        "task",
        description="Where the preference pairs come from: made from a task's examples "
        "(offline), a JSONL file of {prompt, chosen, rejected}, or a Hugging Face dataset.",
    )
    path: Path | None = Field(None, description="JSONL file for source 'jsonl'.")
    hub_dataset: str = Field(ORCA_DPO_PAIRS, description="Hugging Face dataset for 'hub'.")
    hub_split: str = Field("train", description="Split of the hub dataset.")
    prompt_column: str = Field("question", description="Hub column holding the prompt.")
    system_column: str | None = Field(
        "system", description="Hub column prepended to the prompt when non-empty (None: none)."
    )
    chosen_column: str = Field("chosen", description="Hub column of the preferred completion.")
    rejected_column: str = Field("rejected", description="Hub column of the worse completion.")
    task: str = Field("arithmetic", description="Task whose examples make pairs ('task').")
    task_params: dict[str, Any] = Field(default_factory=dict, description="Options of the task.")
    task_seed: int = Field(42, description="Seed of the task examples that make the pairs.")
    reasoning: str = Field(
        DEFAULT_REASONING, description="Working written before the answer in task-made pairs."
    )
    num_pairs: int = Field(
        1000, ge=2, description="Pairs to use (task: examples drawn; files: first N)."
    )
    val_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="Share of pairs held out for pairwise accuracy."
    )


class RewardTrainSettings(_Section):
    learning_rate: float = Field(1e-4, gt=0.0, description="AdamW peak learning rate.")
    batch_size: int = Field(8, ge=1, description="Preference pairs per optimizer step.")
    num_epochs: float = Field(1.0, gt=0.0, description="Passes over the training pairs.")
    max_steps: int | None = Field(
        None, ge=1, description="Optimizer steps (overrides num_epochs when set)."
    )
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0, description="Share of steps warming up.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0.0, description="Gradient-norm clipping threshold.")
    max_length: int = Field(
        512, ge=8, description="Tokens per (prompt, completion); longer ones lose the start."
    )
    eval_batch_size: int = Field(16, ge=1, description="Pairs scored together at evaluation.")
    log_every: int = Field(10, ge=1, description="Write a metrics line every N steps.")
    merge_lora: bool = Field(
        True,
        description="Save LoRA merged into a plain model folder (False: save the adapter).",
    )


class RewardModelConfig(_Section):
    """Everything `smarttuner reward-model train` needs."""

    model: ModelConfig = Field(
        default_factory=ModelConfig,
        description="Backbone: a causal LM gets a fresh 1-output score head.",
    )
    lora: LoraSettings = Field(
        default_factory=LoraSettings, description="LoRA (task SEQ_CLS; head fully trained)."
    )
    data: PairDataSettings = Field(default_factory=PairDataSettings)
    train: RewardTrainSettings = Field(default_factory=RewardTrainSettings)
    seed: int = Field(0, description="Seed of the split, shuffling and the score head.")
    output_dir: Path = Field(Path("runs/reward_model"), description="Where the run writes.")
    overwrite: bool = Field(False, description="Allow writing into a non-empty output directory.")

    @model_validator(mode="after")
    def _check_source(self) -> RewardModelConfig:
        if self.data.source == "jsonl" and self.data.path is None:
            raise ValueError("data.path is required when data.source is 'jsonl'")
        return self
