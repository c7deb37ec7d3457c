"""Can GRPO learn from this model on this task yet? Sample k completions for a few prompts
and measure format rate, pass@1, pass@k and the share of prompts whose k samples are neither
all right nor all wrong (only those give a group-relative learning signal)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from smarttuner.evaluate.sampling import eval_mode, sample_chunks
from smarttuner.formatting import ANSWER_CLOSE, format_ok
from smarttuner.rollout import SamplingParams
from smarttuner.tasks.base import Example, Task


@dataclass(frozen=True)
class ProbeResult:
    format_rate: float
    pass_at_1: float
    pass_at_k: float
    k: int
    mixed_fraction: float  # prompts with some right and some wrong samples
    reward_variance_fraction: float  # prompts whose k task scores are not all equal
    n_prompts: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def probe_model(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    task: Task,
    examples: list[Example],
    k: int = 4,
    temperature: float = 0.7,
    top_p: float = 0.95,
    max_new_tokens: int = 200,
    engine: str = "auto",
    seed: int = 0,
) -> ProbeResult:
    params = SamplingParams(max_new_tokens, temperature, top_p, (ANSWER_CLOSE,))
    gen = torch.Generator().manual_seed(seed)
    with eval_mode(model):
        [(_, batch)] = sample_chunks(
            model, tokenizer, task, examples, k, params, len(examples), engine, gen
        )
    correct = torch.tensor(
        [task.is_correct(text, examples[i // k]) for i, text in enumerate(batch.texts)]
    ).view(-1, k)  # [B, k]
    scores = torch.tensor(
        [task.score(text, examples[i // k]) for i, text in enumerate(batch.texts)]
    ).view(-1, k)  # [B, k]
    any_right, all_right = correct.any(dim=1), correct.all(dim=1)
    return ProbeResult(
        format_rate=sum(format_ok(t) for t in batch.texts) / len(batch.texts),
        pass_at_1=correct.float().mean().item(),
        pass_at_k=any_right.float().mean().item(),
        k=k,
        mixed_fraction=(any_right & ~all_right).float().mean().item(),
        reward_variance_fraction=((scores.max(dim=1).values - scores.min(dim=1).values) > 1e-8)
        .float()
        .mean()
        .item(),
        n_prompts=len(examples),
    )


def needs_warmup(
    result: ProbeResult, min_format_rate: float, min_signal: float
) -> tuple[bool, str]:
    """Whether SFT warm-up should run, and the plain-language reason."""
    if result.format_rate < min_format_rate:
        return True, (
            f"format rate {result.format_rate:.0%} < {min_format_rate:.0%}: the model "
            "does not yet write <think>/<answer>, so rewards would be all zero"
        )
    if result.reward_variance_fraction < min_signal:
        return True, (
            f"only {result.reward_variance_fraction:.0%} of prompts have reward "
            f"variance (< {min_signal:.0%}): GRPO would see almost no signal"
        )
    return False, (
        f"format rate {result.format_rate:.0%} and {result.reward_variance_fraction:.0%} "
        "of prompts with reward variance: GRPO can start directly"
    )


def sft_decision(run_sft: str, warm: bool, reason: str) -> tuple[bool, str]:
    """Whether the pipeline runs SFT under `run_sft` ("auto", "always" or "never") given the
    probe's advice (`warm`, `reason`), and the line that says so. When the setting overrules
    the probe, the line says that, so its reason is not read as the cause."""
    do_sft = run_sft == "always" or (run_sft == "auto" and warm)
    verb = "running" if do_sft else "skipping"
    if do_sft == warm:  # always so under "auto"
        return do_sft, f"{verb} SFT ({run_sft}): {reason}"
    return do_sft, f"{verb} SFT (run_sft: {run_sft}, overriding the probe): {reason}"
