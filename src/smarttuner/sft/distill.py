"""`self_distill`: rejection sampling from the model itself (the STaR / RFT recipe).

For every question the model samples k completions under a *format-teaching prompt* (the
task's system prompt plus one generic worked example in the exact `<think>…</think><answer>…
</answer>` layout). A completion is kept only when its format is strict and the task grades
its answer correct; the first such completion of a question becomes its record. Departures
from STaR: no rationalisation step (questions the model never solves are simply dropped), and
the record stores the *plain* question, so SFT teaches the model to write the format under the
normal prompt, without the demonstration it was sampled with.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from smarttuner.config import SFTSettings
from smarttuner.formatting import ANSWER_CLOSE, format_ok
from smarttuner.prompts import context_length, encode_prompts
from smarttuner.rollout import SamplingParams, get_engine
from smarttuner.sft.records import SFTRecord, format_target
from smarttuner.tasks.base import Example, Task

log = logging.getLogger(__name__)

SOURCE_NAME = "self_distill"
PROMPTS_PER_BATCH = 8  # prompts per engine call; each is sampled k times
TOP_P = 0.95
DEMO_QUESTION = "A shelf holds 4 rows of 6 books, and 5 books are taken away. How many are left?"
DEMO_COMPLETION = format_target(
    "4 rows of 6 books is 4 * 6 = 24 books. Taking 5 away leaves 24 - 5 = 19.", "19"
)


def teaching_system_prompt(system_prompt: str) -> str:
    """`system_prompt` followed by one worked example of the exact output format.

    The example sits in the system turn rather than as an earlier user/assistant exchange
    because some chat templates (Qwen3's) strip `<think>` blocks from past assistant turns.
    """
    return f"{system_prompt}\n\nExample.\nQuestion: {DEMO_QUESTION}\nResponse: {DEMO_COMPLETION}"


def accept_completions(
    task: Task, examples: Sequence[Example], texts: Sequence[str], k: int
) -> tuple[list[SFTRecord], int]:
    """(records, accepted): `texts` holds k samples per example, example-major. A sample is
    accepted when its format is strict and its answer correct; each question keeps its first
    accepted sample, and a question seen before (a duplicate) adds no second record."""
    if len(texts) != len(examples) * k:
        raise ValueError(
            f"expected {len(examples) * k} completions ({k} per example), got {len(texts)}"
        )
    records: list[SFTRecord] = []
    seen: set[str] = set()
    accepted = 0
    for i, example in enumerate(examples):
        for text in texts[i * k : (i + 1) * k]:
            if not (format_ok(text) and task.is_correct(text, example)):
                continue
            accepted += 1
            if example.question not in seen:
                seen.add(example.question)
                records.append(SFTRecord(example.question, text.strip(), source=SOURCE_NAME))
    return records, accepted


def sample_completions(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    task: Task,
    examples: Sequence[Example],
    settings: SFTSettings,
    seed: int,
) -> list[str]:
    """k completions per example under the format-teaching prompt, example-major, in batches of
    PROMPTS_PER_BATCH prompts so memory stays bounded."""
    k = settings.samples_per_question
    params = SamplingParams(
        settings.max_new_tokens, settings.distill_temperature, TOP_P, (ANSWER_CLOSE,)
    )
    prompts = encode_prompts(
        tokenizer,
        [e.question for e in examples],
        teaching_system_prompt(task.system_prompt),
        settings.max_new_tokens,
        context_length(model),
    )
    generate = get_engine("auto")
    generator = torch.Generator().manual_seed(seed)  # CPU: same draws on every device
    texts: list[str] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(prompts), PROMPTS_PER_BATCH):
            chunk = prompts[start : start + PROMPTS_PER_BATCH]
            texts.extend(generate(model, tokenizer, chunk, k, params, generator).texts)
            log.debug("self_distill: sampled %d/%d questions", start + len(chunk), len(prompts))
    finally:
        model.train(was_training)
    return texts


def self_distill_records(
    model: PreTrainedModel | None,
    tokenizer: Tokenizer | None,
    task: Task,
    examples: Sequence[Example],
    settings: SFTSettings,
    seed: int = 0,
) -> tuple[list[SFTRecord], dict[str, Any]]:
    """(records, report) from the model's own verified samples; see the module docstring."""
    if model is None or tokenizer is None:
        raise ValueError("SFT source 'self_distill' needs the model and tokenizer to sample from")
    texts = sample_completions(model, tokenizer, task, examples, settings, seed)
    records, accepted = accept_completions(task, examples, texts, settings.samples_per_question)
    sampled = len(texts)
    rate = accepted / sampled if sampled else 0.0
    log.info(
        "self_distill: accepted %d of %d samples (%.1f%%), %d of %d questions covered",
        accepted,
        sampled,
        100 * rate,
        len(records),
        len(examples),
    )
    if not records:
        log.warning(
            "self_distill accepted no sample: the model cannot yet answer %s correctly "
            "in the format; try sft.source 'programmatic' or 'teacher'",
            task.name,
        )
    report = {
        "source": SOURCE_NAME,
        "asked": len(examples),
        "sampled": sampled,
        "accepted": accepted,
        "acceptance_rate": rate,
        "questions_covered": len(records),
        "made": len(records),
    }
    return records, report
