"""pass@k: sample n completions per prompt and estimate the chance that at least one of k
would be correct.

The estimator is the unbiased one of Chen et al. 2021 (Codex, eq. 1): with n samples of which
c are correct, pass@k = 1 - C(n-c, k) / C(n, k), averaged over prompts. Drawing exactly k
samples and checking "any correct" is the same expectation with a higher variance; n > k
samples give every k ≤ n from one sampling run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from smarttuner.evaluate.sampling import eval_mode, sample_chunks
from smarttuner.formatting import ANSWER_CLOSE, format_ok
from smarttuner.rollout import SamplingParams
from smarttuner.tasks.base import Example, Task


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one prompt: 1 - C(n-c, k) / C(n, k) (exact integer binomials)."""
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"pass@k needs n >= 1 and 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n samples, got k={k}, n={n}")
    if n - c < k:  # every draw of k holds a correct sample
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def mean_pass_at_k(correct_counts: list[int], n: int, k: int) -> float:
    """pass@k averaged over prompts, each with `n` samples and `correct_counts[i]` correct."""
    if not correct_counts:
        return 0.0
    return sum(pass_at_k(n, c, k) for c in correct_counts) / len(correct_counts)


@dataclass
class SampledResult:
    """What n samples per prompt say: pass@k for each asked k, and per-sample rates."""

    num_samples: int
    temperature: float
    pass_at: dict[int, float]
    sample_accuracy: float  # correct samples / all samples (= pass@1 estimate)
    format_rate: float
    mean_length: float
    n: int  # prompts
    correct_counts: list[int] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        return {
            **{f"pass@{k}": v for k, v in sorted(self.pass_at.items())},
            "sample_accuracy": self.sample_accuracy,
            "sample_format_rate": self.format_rate,
            "sample_mean_length": self.mean_length,
            "num_samples": self.num_samples,
            "temperature": self.temperature,
        }


def check_ks(ks: list[int], num_samples: int) -> list[int]:
    """Sorted, deduplicated ks; each must be in 1..num_samples."""
    bad = [k for k in ks if not 1 <= k <= num_samples]
    if bad or not ks:
        raise ValueError(
            f"pass@k values {ks} must each be between 1 and the number of samples {num_samples}"
        )
    return sorted(set(ks))


def evaluate_pass_at_k(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    task: Task,
    examples: list[Example],
    num_samples: int,
    ks: list[int],
    max_new_tokens: int,
    temperature: float = 0.7,
    top_p: float = 0.95,
    batch_size: int = 32,
    engine: str = "auto",
    seed: int = 0,
) -> SampledResult:
    """Sample `num_samples` completions per prompt (about `batch_size` rows per decode batch)."""
    ks = check_ks(ks, num_samples)
    if temperature <= 0:
        raise ValueError(f"pass@k needs sampling: temperature must be > 0, got {temperature}")
    params = SamplingParams(max_new_tokens, temperature, top_p, (ANSWER_CLOSE,))
    gen = torch.Generator().manual_seed(seed)
    counts, formatted, lengths = [], 0, []
    per_chunk = max(1, batch_size // num_samples)
    with eval_mode(model):
        for chunk, batch in sample_chunks(
            model, tokenizer, task, examples, num_samples, params, per_chunk, engine, gen
        ):
            for i, example in enumerate(chunk):
                texts = batch.texts[i * num_samples : (i + 1) * num_samples]
                counts.append(sum(task.is_correct(t, example) for t in texts))
                formatted += sum(format_ok(t) for t in texts)
            lengths.extend(batch.lengths.tolist())
    total = max(len(examples) * num_samples, 1)
    return SampledResult(
        num_samples=num_samples,
        temperature=temperature,
        pass_at={k: mean_pass_at_k(counts, num_samples, k) for k in ks},
        sample_accuracy=sum(counts) / total,
        format_rate=formatted / total,
        mean_length=sum(lengths) / max(len(lengths), 1),
        n=len(examples),
        correct_counts=counts,
    )
