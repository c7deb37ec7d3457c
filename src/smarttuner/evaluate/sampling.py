"""The decoding loop every evaluation shares: chunks of examples -> their task prompts ->
`num_samples` completions each, with the model in eval mode for the duration."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from smarttuner.prompts import context_length, encode_prompts
from smarttuner.rollout import RolloutBatch, SamplingParams, get_engine
from smarttuner.tasks.base import Example, Task


@contextlib.contextmanager
def eval_mode(model: PreTrainedModel) -> Iterator[PreTrainedModel]:
    """Eval mode inside, the previous train/eval mode restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def sample_chunks(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    task: Task,
    examples: list[Example],
    num_samples: int,
    params: SamplingParams,
    prompts_per_chunk: int,
    engine: str = "auto",
    generator: torch.Generator | None = None,
) -> Iterator[tuple[list[Example], RolloutBatch]]:
    """(chunk, completions) pairs; completions are prompt-major, `num_samples` per example.
    Call inside `eval_mode`."""
    generate = get_engine(engine)
    for start in range(0, len(examples), max(prompts_per_chunk, 1)):
        chunk = examples[start : start + max(prompts_per_chunk, 1)]
        prompts = encode_prompts(
            tokenizer,
            [e.question for e in chunk],
            task.system_prompt,
            params.max_new_tokens,
            context_length(model),
        )
        yield chunk, generate(model, tokenizer, prompts, num_samples, params, generator)
