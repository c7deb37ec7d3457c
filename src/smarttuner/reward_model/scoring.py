"""Scoring (prompt, completion) pairs with a sequence-classification reward model.

Training and the `reward_model` reward both go through `pair_text` and `encode_texts`, so a
model sees its inputs laid out exactly as it was trained: the tokenizer's chat template with the
prompt as the user turn and the completion as the assistant turn (a plain
`Question: …\\nResponse: …` layout when the tokenizer has no template). Inputs longer than
`max_length` lose tokens from the left, keeping the end of the completion, where the score is
read (the last non-padding token, as transformers' `*ForSequenceClassification` do).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer


def pair_text(tokenizer: Tokenizer, prompt: str, completion: str) -> str:
    """The text a reward model reads for one (prompt, completion)."""
    if getattr(tokenizer, "chat_template", None):
        messages = [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": completion},
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return f"Question: {prompt}\nResponse: {completion}"


def encode_texts(
    tokenizer: Tokenizer, texts: list[str], max_length: int
) -> dict[str, torch.Tensor]:
    """Right-padded `input_ids` and `attention_mask` ([N, T]), each text cut to its last
    `max_length` tokens."""
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"][-max_length:] for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)  # [N, T]
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # [N, T]
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def pair_rewards(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    prompts: list[str],
    completions: list[str],
    max_length: int,
) -> torch.Tensor:  # [N]
    """Scalar rewards of one batch (gradients flow: used by training and, under no_grad, by
    `score_pairs`)."""
    texts = [pair_text(tokenizer, p, c) for p, c in zip(prompts, completions, strict=True)]
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in encode_texts(tokenizer, texts, max_length).items()}
    return model(**batch).logits[:, 0].float()  # [N]


@torch.no_grad()
def score_pairs(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    prompts: list[str],
    completions: list[str],
    batch_size: int = 8,
    max_length: int = 1024,
) -> list[float]:
    """Rewards of every (prompt, completion), `batch_size` at a time, without gradients."""
    was_training = model.training
    model.eval()
    scores: list[float] = []
    for s in range(0, len(completions), batch_size):
        sl = slice(s, s + batch_size)
        scores += pair_rewards(model, tokenizer, prompts[sl], completions[sl], max_length).tolist()
    model.train(was_training)
    return scores


def load_reward_model(
    spec: str, device: str = "auto", dtype: str = "auto"
) -> tuple[PreTrainedModel, Tokenizer]:
    """A trained reward model (full folder, PEFT adapter folder or hub id), frozen, on `device`."""
    from transformers import AutoModelForSequenceClassification

    from smarttuner.models import (
        ModelLoadError,
        is_adapter_dir,
        load_tokenizer,
        resolve_device,
        resolve_dtype,
    )

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    try:
        if is_adapter_dir(spec):
            from peft import AutoPeftModelForSequenceClassification

            model = AutoPeftModelForSequenceClassification.from_pretrained(
                spec, dtype=torch_dtype, num_labels=1
            )
        else:
            model = AutoModelForSequenceClassification.from_pretrained(spec, dtype=torch_dtype)
    except (OSError, ValueError) as err:
        where = "local folder" if Path(spec).exists() else "reachable Hugging Face hub id"
        raise ModelLoadError(f"cannot load reward model {spec!r} ({where}): {err}") from None
    if model.config.num_labels != 1:
        raise ModelLoadError(
            f"reward model {spec!r} has {model.config.num_labels} labels; a reward model has 1"
        )
    tokenizer = load_tokenizer(spec)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.eval().requires_grad_(False)
    return model.to(dev), tokenizer
