"""`reward_model`: score each (prompt, completion) with a trained reward model.

    params:
      model:         folder written by `smarttuner reward-model train` (or any
                     `*ForSequenceClassification` with one label: folder, adapter or hub id)
      device:        auto (as for the policy: CUDA, then MPS, then CPU) or cpu/cuda/mps
      dtype:         auto | float32 | bfloat16 | float16
      batch_size:    pairs scored per forward pass (default 8)
      normalize:     z-score the scores within the batch (default false)
      prompt_column: the column used as the prompt (default `question`, the raw question, as
                     the model was trained on); when absent, the rendered prompts are used
      max_length:    tokens per input; longer ones lose the start (default 1024)

The model reads the pair laid out as in training (`smarttuner.reward_model.scoring`), without
gradients.
"""

from __future__ import annotations

from typing import Any

from smarttuner.rewards.base import RewardFn, register_reward
from smarttuner.rewards.columns import check_params, zscore
from smarttuner.tasks.base import Task

_PARAMS = ("model", "device", "dtype", "batch_size", "normalize", "prompt_column", "max_length")


class RewardModelReward:
    """The reward function around a loaded reward model and its tokenizer."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        batch_size: int = 8,
        normalize: bool = False,
        prompt_column: str = "question",
        max_length: int = 1024,
    ) -> None:
        if batch_size < 1 or max_length < 8:
            raise ValueError("reward 'reward_model': batch_size must be >= 1 and max_length >= 8")
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.normalize = batch_size, normalize
        self.prompt_column, self.max_length = prompt_column, max_length

    def __call__(
        self, prompts: list[str], completions: list[str], **columns: Any
    ) -> list[float | None]:
        from smarttuner.reward_model.scoring import score_pairs

        given = columns.get(self.prompt_column)
        texts = [str(p) for p in given] if given is not None else list(prompts)
        scores = score_pairs(
            self.model, self.tokenizer, texts, completions, self.batch_size, self.max_length
        )
        return list(zscore(scores) if self.normalize else scores)


@register_reward("reward_model")
def reward_model(task: Task | None = None, **params: Any) -> RewardFn:
    check_params("reward_model", params, _PARAMS)
    if not params.get("model"):
        raise ValueError(
            "reward 'reward_model' needs params.model: a folder written by "
            "`smarttuner reward-model train` or a sequence-classification model id"
        )
    settings = {
        "batch_size": int(params.get("batch_size", 8)),
        "normalize": bool(params.get("normalize", False)),
        "prompt_column": str(params.get("prompt_column", "question")),
        "max_length": int(params.get("max_length", 1024)),
    }
    RewardModelReward(None, None, **settings)  # validate before loading the model
    from smarttuner.reward_model.scoring import load_reward_model

    model, tokenizer = load_reward_model(
        str(params["model"]), str(params.get("device", "auto")), str(params.get("dtype", "auto"))
    )
    return RewardModelReward(model, tokenizer, **settings)
