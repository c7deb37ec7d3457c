"""`perplexity`: mean completion log-likelihood under a scorer LM, z-scored within the batch."""

from __future__ import annotations

import math

import pytest
import torch

from smarttuner.rewards import build_reward
from smarttuner.rewards.perplexity import PerplexityReward, completion_mean_logprob


def test_mean_logprob_by_hand() -> None:
    # vocabulary of 2. Position 0 predicts token 1 with logits [0, ln 3]: p = 3/4.
    # Position 1 predicts token 1 with logits [ln 3, 0]: p = 1/4. Position 2 predicts nothing.
    logits = torch.tensor([[[0.0, math.log(3)], [math.log(3), 0.0], [0.0, 0.0]]])  # [1, 3, 2]
    ids = torch.tensor([[0, 1, 1]])
    both = torch.tensor([[0, 1, 1]])  # score tokens 1 and 2
    last = torch.tensor([[0, 0, 1]])  # score token 2 only
    assert completion_mean_logprob(logits, ids, both).item() == pytest.approx(
        (math.log(0.75) + math.log(0.25)) / 2
    )
    assert completion_mean_logprob(logits, ids, last).item() == pytest.approx(math.log(0.25))


@pytest.fixture(scope="module")
def scorer(tiny_model_dir) -> PerplexityReward:
    fn = build_reward(
        "perplexity", None, {"model": tiny_model_dir, "device": "cpu", "normalize": False}
    )
    assert isinstance(fn, PerplexityReward)
    return fn


COMPLETIONS = ["<answer> 14 </answer>", "Yes", "3 + 4 = 7, then 7 * 2 = 14 and so on"]
PROMPTS = ["What is (3 + 4) * 2?", "Does it follow? Yes or No", "Calculate the value."]


def test_raw_value_is_the_mean_token_logprob(scorer, tiny_tokenizer) -> None:
    values = scorer(prompts=PROMPTS, completions=COMPLETIONS)
    # by hand for the second sample: context tokens then completion tokens, one forward
    ctx = tiny_tokenizer(PROMPTS[1], add_special_tokens=False)["input_ids"]
    comp = tiny_tokenizer(COMPLETIONS[1], add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ctx + comp])
    with torch.no_grad():
        logp = torch.log_softmax(scorer.model(input_ids=ids).logits[0], dim=-1)
    expected = sum(logp[len(ctx) + j - 1, t].item() for j, t in enumerate(comp)) / len(comp)
    assert values[1] == pytest.approx(expected, abs=1e-5)
    assert all(v < 0 for v in values)


def test_batched_equals_one_at_a_time(scorer) -> None:
    together = scorer(prompts=PROMPTS, completions=COMPLETIONS)
    alone = [
        scorer(prompts=[p], completions=[c])[0] for p, c in zip(PROMPTS, COMPLETIONS, strict=True)
    ]
    assert together == pytest.approx(alone, abs=1e-5)


def test_zscored_within_the_batch(scorer) -> None:
    raw = scorer(prompts=PROMPTS, completions=COMPLETIONS)
    z = PerplexityReward(scorer.model, scorer.tokenizer)(prompts=PROMPTS, completions=COMPLETIONS)
    assert sum(z) == pytest.approx(0.0, abs=1e-5)
    assert sum(v * v for v in z) / len(z) == pytest.approx(1.0, abs=1e-3)
    assert sorted(range(3), key=lambda i: z[i]) == sorted(range(3), key=lambda i: raw[i])


def test_empty_completion_does_not_apply(scorer) -> None:
    z = PerplexityReward(scorer.model, scorer.tokenizer)(
        prompts=PROMPTS, completions=[COMPLETIONS[0], "", COMPLETIONS[2]]
    )
    assert z[1] is None
    assert z[0] == pytest.approx(-z[2])  # two values z-score to ±1
    assert abs(z[0]) == pytest.approx(1.0, abs=1e-3)


def test_contexts(scorer) -> None:
    question = PerplexityReward(scorer.model, scorer.tokenizer, context="question", normalize=False)
    none = PerplexityReward(scorer.model, scorer.tokenizer, context="none", normalize=False)
    by_question = question(prompts=["ignored"] * 3, completions=COMPLETIONS, question=PROMPTS)
    by_prompt = scorer(prompts=PROMPTS, completions=COMPLETIONS)
    unconditional = none(prompts=PROMPTS, completions=COMPLETIONS)
    assert by_question != pytest.approx(by_prompt)  # a space joins question and completion
    assert unconditional != pytest.approx(by_prompt)
    with pytest.raises(ValueError, match="'perplexity' needs the column 'question'"):
        question(prompts=["p"], completions=["c"])


def test_long_inputs_are_cut_from_the_left(scorer) -> None:
    short = PerplexityReward(scorer.model, scorer.tokenizer, normalize=False, max_length=16)
    values = short(prompts=[PROMPTS[0] * 20], completions=[COMPLETIONS[2] * 5])
    assert math.isfinite(values[0])


def test_bad_params_fail_before_loading() -> None:
    with pytest.raises(ValueError, match="context must be one of"):
        build_reward("perplexity", None, {"model": "/never/loaded", "context": "both"})
    with pytest.raises(ValueError, match="unknown parameter"):
        build_reward("perplexity", None, {"modell": "x"})
