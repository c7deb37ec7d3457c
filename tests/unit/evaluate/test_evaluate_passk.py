"""pass@k: the unbiased estimator worked out by hand, and sampling on the tiny model."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from smarttuner.evaluate.passk import evaluate_pass_at_k, mean_pass_at_k, pass_at_k
from smarttuner.tasks import get_task
from smarttuner.tasks.base import Example


def test_pass_at_k_by_hand() -> None:
    # n=5 samples, c=2 correct, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # k=1 is the fraction correct: 1 - C(3,1)/C(5,1) = 1 - 3/5 = 0.4
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    # n=10, c=3, k=5: 1 - C(7,5)/C(10,5) = 1 - 21/252 = 11/12
    assert pass_at_k(10, 3, 5) == pytest.approx(11 / 12)
    # fewer wrong samples than k: every draw of k holds a correct one
    assert pass_at_k(4, 3, 2) == 1.0
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 4, 1) == 1.0
    # k = n is "any correct"
    assert pass_at_k(6, 1, 6) == 1.0


def test_pass_at_k_equals_the_empirical_any_correct_over_all_subsets() -> None:
    from itertools import combinations

    samples = [1, 0, 0, 1, 0, 0, 0]  # n=7, c=2
    for k in range(1, 8):
        subsets = list(combinations(samples, k))
        empirical = sum(any(s) for s in subsets) / len(subsets)
        assert pass_at_k(7, 2, k) == pytest.approx(empirical)


def test_mean_pass_at_k_and_bad_input() -> None:
    # prompts with 0, 1 and 4 of 4 correct, k=2: 0, 1 - C(3,2)/C(4,2) = 0.5, 1 -> mean 0.5
    assert mean_pass_at_k([0, 1, 4], 4, 2) == pytest.approx(0.5)
    assert mean_pass_at_k([], 4, 2) == 0.0
    with pytest.raises(ValueError, match="k=5, n=4"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="c=5"):
        pass_at_k(4, 5, 1)


@dataclass
class EvenLengthTask:
    """A task whose "correct" completions are those of even character length: random enough
    on the tiny model to give prompts with some right and some wrong samples."""

    name: str = "even"
    system_prompt: str = "Answer."

    def examples(self, seed: int, n: int) -> list[Example]:
        return get_task("arithmetic").examples(seed, n)

    def score(self, completion: str, example: Example) -> float:
        return float(self.is_correct(completion, example))

    def is_correct(self, completion: str, example: Example) -> bool:
        return len(completion) % 2 == 0


def test_sampled_pass_at_k_on_the_tiny_model(tiny_model, tiny_tokenizer) -> None:
    task = EvenLengthTask()
    examples = task.examples(123, 3)
    result = evaluate_pass_at_k(
        tiny_model, tiny_tokenizer, task, examples, num_samples=4, ks=[1, 2, 4],
        max_new_tokens=6, temperature=1.0, batch_size=8, seed=1,
    )  # fmt: skip
    assert result.n == 3 and len(result.correct_counts) == 3
    assert all(0 <= c <= 4 for c in result.correct_counts)
    # pass@1 is the fraction of correct samples; pass@k grows with k; pass@4 = any correct
    assert result.pass_at[1] == pytest.approx(result.sample_accuracy)
    assert result.pass_at[1] <= result.pass_at[2] <= result.pass_at[4]
    assert result.pass_at[4] == pytest.approx(sum(c > 0 for c in result.correct_counts) / 3)
    assert math.isfinite(result.mean_length) and 0 < result.mean_length <= 6
    metrics = result.metrics()
    assert set(metrics) >= {"pass@1", "pass@2", "pass@4", "sample_accuracy", "num_samples"}
    # the same seed gives the same samples
    again = evaluate_pass_at_k(
        tiny_model, tiny_tokenizer, task, examples, 4, [1, 2, 4], 6, temperature=1.0,
        batch_size=8, seed=1,
    )  # fmt: skip
    assert again.correct_counts == result.correct_counts
    with pytest.raises(ValueError, match="between 1 and the number of samples 4"):
        evaluate_pass_at_k(tiny_model, tiny_tokenizer, task, examples, 4, [8], 6)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        evaluate_pass_at_k(tiny_model, tiny_tokenizer, task, examples, 4, [1], 6, temperature=0)
