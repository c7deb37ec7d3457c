"""Completion log-probabilities on left-padded batches equal the unpadded per-sample ones."""

from __future__ import annotations

import pytest
import torch

from smarttuner.grpo.buffer import Experience, collate
from smarttuner.grpo.logprobs import (
    bucketed_logprobs,
    completion_logprobs,
    selective_log_softmax,
)


def sharpen(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Larger random weights: the tiny model's distributions become far from uniform."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


@torch.no_grad()
def manual_logprobs(
    model: torch.nn.Module, prompt: list[int], completion: list[int], temperature: float
) -> torch.Tensor:  # [C]
    """One unpadded sequence: log_softmax at positions P-1 … P+C-2, picked at the next token."""
    ids = torch.tensor([prompt + completion])
    logits = model(input_ids=ids).logits[0] / temperature  # [P+C, V]
    logp = torch.log_softmax(logits.double(), dim=-1)
    rows = torch.arange(len(prompt) - 1, len(prompt) + len(completion) - 1)
    return logp[rows, torch.tensor(completion)].float()


pytestmark = pytest.mark.usefixtures("single_thread")


CASES = [
    ([5, 17, 42], [100, 7, 250, 3]),
    ([9], [11]),
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [200, 201]),
    ([300, 12, 44, 45, 46], [60, 61, 62, 63, 64, 65]),
]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_padded_batch_equals_unpadded_samples(tiny_model, temperature: float) -> None:
    model = sharpen(tiny_model)
    pad = 2
    items = [
        Experience(torch.tensor(p), torch.tensor(c), torch.zeros(len(c)), None, 0.0, 0)
        for p, c in CASES
    ]
    mb = collate(items, pad)
    assert (mb.prompt_mask == 0).any() and (mb.completion_mask == 0).any()  # both paddings
    with torch.no_grad():
        batched = completion_logprobs(
            model,
            mb.prompt_ids,
            mb.prompt_mask,
            mb.completion_ids,
            mb.completion_mask,
            temperature,
        )
    assert batched.shape == mb.completion_ids.shape
    for i, (prompt, completion) in enumerate(CASES):
        expected = manual_logprobs(model, prompt, completion, temperature)
        torch.testing.assert_close(batched[i, : len(completion)], expected, atol=1e-4, rtol=0)


def test_logprobs_are_differentiable_and_valid(tiny_model) -> None:
    model = sharpen(tiny_model)
    prompt = torch.tensor([[5, 17, 42]])
    completion = torch.tensor([[100, 7]])
    logp = completion_logprobs(
        model, prompt, torch.ones_like(prompt), completion, torch.ones_like(completion)
    )
    assert (logp < 0).all()
    logp.sum().backward()
    assert model.model.embed_tokens.weight.grad is not None


def test_selective_log_softmax_matches_full_log_softmax() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 50, generator=gen) * 4
    index = torch.randint(0, 50, (3, 4), generator=gen)
    expected = torch.log_softmax(logits, dim=-1).gather(-1, index.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(selective_log_softmax(logits, index), expected)


@pytest.mark.parametrize("max_rows", [None, 1, 3])
def test_bucketed_equals_one_padded_forward_with_gradients(tiny_model, max_rows) -> None:
    model = sharpen(tiny_model).double()
    lengths = [1, 2, 30, 3, 31, 2]  # two stragglers: the plan splits the batch
    # three distinct prompts: max_rows 1 also splits the one prompt pass into three forwards
    cases = [(CASES[i % 3][0], list(range(10, 10 + n))) for i, n in enumerate(lengths)]
    items = [Experience(torch.tensor(p), torch.tensor(c), None, None, 0.0, 0) for p, c in cases]
    mb = collate(items, 2)
    args = (mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mb.completion_mask, 0.7)
    weight = torch.randn(mb.completion_ids.shape, generator=torch.Generator().manual_seed(3))

    def run(fn, **kw):
        model.zero_grad()
        logp = fn(model, *args, **kw) * mb.completion_mask
        (logp * weight).sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        return logp.detach(), grads

    plain, plain_grads = run(completion_logprobs, share_prompts=False)  # no cache at all
    bucketed, bucketed_grads = run(bucketed_logprobs, max_rows=max_rows)
    torch.testing.assert_close(bucketed, plain, atol=1e-5, rtol=1e-5)  # float rounding only
    for a, b in zip(bucketed_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_batched_logprobs_of_chosen_rows(tiny_model) -> None:
    """Only the rows that become experience are forwarded; the others stay 0."""
    from smarttuner.grpo.experience import batched_logprobs
    from smarttuner.rollout import RolloutBatch

    model = sharpen(tiny_model)
    items = [Experience(torch.tensor(p), torch.tensor(c), None, None, 0.0, 0) for p, c in CASES]
    mb = collate(items, 2)
    batch = RolloutBatch(
        mb.prompt_ids,
        mb.prompt_mask,
        mb.completion_ids,
        mb.completion_mask,
        torch.zeros(len(CASES), dtype=torch.bool),
        [""] * len(CASES),
    )
    every = batched_logprobs(model, batch, 1.0, chunk=2)
    rows = torch.tensor([1, 3])
    some = batched_logprobs(model, batch, 1.0, chunk=2, rows=rows)
    torch.testing.assert_close(some[rows], every[rows], atol=1e-5, rtol=1e-5)
    assert not some[torch.tensor([0, 2])].any()
    assert not batched_logprobs(model, batch, 1.0, chunk=2, rows=rows[:0]).any()
