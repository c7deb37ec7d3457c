"""Accuracy and format compliance of a model on a task's held-out examples (greedy decoding)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from smarttuner.evaluate.sampling import eval_mode, sample_chunks
from smarttuner.formatting import ANSWER_CLOSE, format_ok
from smarttuner.rollout import SamplingParams
from smarttuner.tasks.base import Example, Task
from smarttuner.tasks.splits import balanced_accuracy


@dataclass
class EvalResult:
    accuracy: float
    format_rate: float
    mean_length: float
    mean_score: float
    n: int
    samples: list[dict[str, Any]] = field(default_factory=list)
    balanced_accuracy: float | None = None  # mean per-class recall (yes/no style tasks)
    correct: list[bool] = field(default_factory=list)  # per prompt, for paired comparisons

    def metrics(self) -> dict[str, float]:
        extra = (
            {} if self.balanced_accuracy is None else {"balanced_accuracy": self.balanced_accuracy}
        )
        return {
            **extra,
            "accuracy": self.accuracy,
            "format_rate": self.format_rate,
            "mean_length": self.mean_length,
            "mean_score": self.mean_score,
            "n": self.n,
        }


def evaluate_task(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    task: Task,
    examples: list[Example],
    max_new_tokens: int,
    batch_size: int = 32,
    engine: str = "auto",
    keep_samples: int = 0,
) -> EvalResult:
    """Greedy completions for `examples`; accuracy = task.is_correct, format = strict tags."""
    params = SamplingParams(max_new_tokens, temperature=0.0, stop_strings=(ANSWER_CLOSE,))
    correct, formatted, lengths, scores, samples = [], [], [], [], []
    with eval_mode(model):
        for chunk, batch in sample_chunks(
            model, tokenizer, task, examples, 1, params, batch_size, engine
        ):
            for example, text, length in zip(
                chunk, batch.texts, batch.lengths.tolist(), strict=True
            ):
                correct.append(task.is_correct(text, example))
                formatted.append(format_ok(text))
                scores.append(task.score(text, example))
                lengths.append(length)
                if len(samples) < keep_samples:
                    samples.append(
                        {
                            "question": example.question,
                            "gold": example.answer,
                            "completion": text,
                            "correct": correct[-1],
                            "format_ok": formatted[-1],
                        }
                    )
    n = max(len(examples), 1)
    return EvalResult(
        accuracy=sum(correct) / n,
        format_rate=sum(formatted) / n,
        mean_length=float(torch.tensor(lengths, dtype=torch.float32).mean()) if lengths else 0.0,
        mean_score=sum(scores) / n,
        n=len(examples),
        samples=samples,
        balanced_accuracy=balanced_accuracy(correct, examples),
        correct=correct,
    )
