"""`perplexity`: how natural a completion reads to a scorer language model.

The raw value is the mean log-likelihood per token of the completion under a causal LM,
`(1/T) Σ_t log p(c_t | context, c_<t)` (minus the log of the perplexity); with `normalize`
(the default) it is z-scored within the batch, `(x − mean) / std`, so its scale does not
depend on the scorer or the length of the text and it mixes with other rewards by weight.
This is the fluency half of the CoLA recipe.

    params:
      model:      causal LM: hub id, local folder or 'smollm2-135m-instruct' (default)
      context:    what the completion is conditioned on — `prompt` (the rendered prompt, the
                  default), `question` (the raw question text, e.g. the start of a sentence
                  to be completed; joined with one space) or `none`
      normalize:  z-score within the batch (default true)
      device, dtype, batch_size, max_length (tokens kept, context cut from the left)

An empty completion has no tokens to score: its value is None ("does not apply").
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
import torch.nn.functional as F

from smarttuner.rewards.base import RewardFn, register_reward
from smarttuner.rewards.columns import check_params, column, zscore
from smarttuner.tasks.base import Task

log = logging.getLogger(__name__)

_PARAMS = ("model", "context", "normalize", "device", "dtype", "batch_size", "max_length")
_CONTEXTS = ("prompt", "question", "none")


def completion_mean_logprob(
    logits: torch.Tensor,  # [B, T, V]
    input_ids: torch.Tensor,  # [B, T]
    target_mask: torch.Tensor,  # [B, T] 1 on the completion tokens being scored
) -> torch.Tensor:  # [B]
    """Mean log-probability of the masked tokens, each predicted from the position before."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)  # [B, T-1, V]
    token_logp = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # [B, T-1]
    mask = target_mask[:, 1:].float()  # [B, T-1]
    return (token_logp * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


class PerplexityReward:
    """The reward function around a loaded scorer model and its tokenizer."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        context: Literal["prompt", "question", "none"] = "prompt",
        normalize: bool = True,
        batch_size: int = 8,
        max_length: int = 1024,
    ) -> None:
        if context not in _CONTEXTS:
            raise ValueError(
                f"reward 'perplexity': context must be one of {list(_CONTEXTS)}, got {context!r}"
            )
        if batch_size < 1 or max_length < 2:
            raise ValueError("reward 'perplexity': batch_size must be >= 1 and max_length >= 2")
        self.model, self.tokenizer = model, tokenizer
        self.context, self.normalize = context, normalize
        self.batch_size, self.max_length = batch_size, max_length

    def __call__(
        self, prompts: list[str], completions: list[str], **columns: Any
    ) -> list[float | None]:
        n = len(completions)
        if self.context == "prompt":
            contexts = list(prompts)
        elif self.context == "question":
            contexts = [str(q) for q in column("perplexity", "question", n, columns)]
        else:
            contexts = [""] * n
        raw = self.mean_logprobs(contexts, completions)
        present = [i for i, v in enumerate(raw) if v is not None]
        values: list[float | None] = [None] * n
        scored = [raw[i] for i in present]
        if self.normalize:
            scored = zscore(scored)
        for i, v in zip(present, scored, strict=True):
            values[i] = v
        return values

    @torch.no_grad()
    def mean_logprobs(self, contexts: list[str], completions: list[str]) -> list[float | None]:
        """Mean log-likelihood per completion token; None for a completion with no tokens."""
        rows = [self._encode(c, x) for c, x in zip(contexts, completions, strict=True)]
        out: list[float | None] = [None] * len(rows)
        todo = [i for i, (_, n_target) in enumerate(rows) if n_target > 0]
        device = next(self.model.parameters()).device
        for s in range(0, len(todo), self.batch_size):
            chunk = todo[s : s + self.batch_size]
            ids, mask, target = _pad([rows[i] for i in chunk], self.tokenizer.pad_token_id)
            logits = self.model(
                input_ids=ids.to(device), attention_mask=mask.to(device)
            ).logits  # [b, T, V]
            means = completion_mean_logprob(logits, ids.to(device), target.to(device))
            for i, v in zip(chunk, means.tolist(), strict=True):
                out[i] = v
        return out

    def _encode(self, context: str, completion: str) -> tuple[list[int], int]:
        """(token ids of context + completion, number of completion tokens at the end)."""
        tok = self.tokenizer
        if self.context == "question" and context and completion[:1] not in ("", " ", "\n"):
            completion = " " + completion
        target = tok(completion, add_special_tokens=False)["input_ids"]
        if context:
            prefix = tok(context, add_special_tokens=False)["input_ids"]
        else:  # no context: the first token is predicted from BOS when there is one
            bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
            prefix = [bos] if bos is not None else []
        target = target[-(self.max_length - 1) :]
        ids = (prefix + target)[-self.max_length :]
        n_target = min(len(target), len(ids) - 1)  # the first token has no prediction
        return ids, max(n_target, 0)


def _pad(
    rows: list[tuple[list[int], int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # each [B, T]
    """Right-padded ids, attention mask, and a mask of the last `n_target` real tokens."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    target = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (row, n_target) in enumerate(rows):
        ids[r, : len(row)] = torch.tensor(row)
        mask[r, : len(row)] = 1
        target[r, len(row) - n_target : len(row)] = 1
    return ids, mask, target


@register_reward("perplexity")
def perplexity(task: Task | None = None, **params: Any) -> RewardFn:
    check_params("perplexity", params, _PARAMS)
    from smarttuner.config import BUNDLED_MODEL, ModelConfig
    from smarttuner.models import load_model

    settings = {
        "context": params.get("context", "prompt"),
        "normalize": bool(params.get("normalize", True)),
        "batch_size": int(params.get("batch_size", 8)),
        "max_length": int(params.get("max_length", 1024)),
    }
    PerplexityReward(None, None, **settings)  # validate before loading the scorer
    cfg = ModelConfig(
        name=str(params.get("model", BUNDLED_MODEL)),
        device=params.get("device", "auto"),
        dtype=params.get("dtype", "auto"),
    )
    model, tokenizer = load_model(cfg, lora=None, trainable=False)
    model.eval().requires_grad_(False)
    return PerplexityReward(model, tokenizer, **settings)
