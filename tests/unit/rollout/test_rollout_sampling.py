"""Temperature and top-p sampling match transformers' logits warpers."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from smarttuner.rollout.sampling import sample_next, top_p_filter


@pytest.mark.parametrize("top_p", [0.05, 0.3, 0.5, 0.9, 0.95, 0.999])
def test_top_p_filter_matches_transformers(top_p: float) -> None:
    gen = torch.Generator().manual_seed(int(top_p * 1000))
    logits = torch.randn(8, 64, generator=gen) * 3
    ours = top_p_filter(logits, top_p)
    theirs = TopPLogitsWarper(top_p)(torch.zeros(8, 1, dtype=torch.long), logits.clone())
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs))
    assert torch.equal(ours, theirs)
    kept = torch.isfinite(ours)
    assert kept.any(dim=1).all()  # the most likely token always survives
    assert (logits.softmax(-1) * kept).sum(dim=1).min() >= top_p - 1e-6  # kept mass reaches top_p


def test_top_p_filter_after_temperature_matches_transformers() -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 100, generator=gen) * 2
    ids = torch.zeros(4, 1, dtype=torch.long)
    theirs = TopPLogitsWarper(0.95)(ids, TemperatureLogitsWarper(0.7)(ids, logits.clone()))
    assert torch.equal(top_p_filter(logits / 0.7, 0.95), theirs)


def test_top_p_one_keeps_everything() -> None:
    logits = torch.randn(2, 10)
    assert torch.equal(top_p_filter(logits, 1.0), logits)


def test_top_p_by_hand() -> None:
    # probs [0.5, 0.3, 0.15, 0.05]: top_p 0.8 keeps {0.5, 0.3}; 0.81 also needs 0.15
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isfinite(top_p_filter(logits, 0.8)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(top_p_filter(logits, 0.81)).tolist() == [[True, True, True, False]]


def test_temperature_zero_is_argmax() -> None:
    logits = torch.tensor([[0.1, 3.0, -1.0], [2.0, 1.0, 0.0]])
    assert sample_next(logits, 0.0, 0.5).tolist() == [1, 0]


def test_sampling_follows_the_softmax_of_scaled_logits() -> None:
    # logits [0, ln 3] at temperature 1: P(token 1) = 0.75; at temperature 0.5: 9 / 10
    logits = torch.log(torch.tensor([1.0, 3.0])).expand(4000, 2)
    gen = torch.Generator().manual_seed(0)
    assert sample_next(logits, 1.0, 1.0, gen).float().mean().item() == pytest.approx(0.75, abs=0.03)
    assert sample_next(logits, 0.5, 1.0, gen).float().mean().item() == pytest.approx(0.9, abs=0.02)
    # top_p 0.7 keeps only the 0.75 token
    assert sample_next(logits, 1.0, 0.7, gen).tolist() == [1] * 4000


def test_sampling_with_a_seeded_generator_is_reproducible() -> None:
    logits = torch.randn(16, 50)
    a = sample_next(logits, 0.7, 0.95, torch.Generator().manual_seed(5))
    b = sample_next(logits, 0.7, 0.95, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("top_p", [0.5, 0.9, 0.95])
def test_candidate_nucleus_is_exactly_the_full_sort_nucleus(top_p: float) -> None:
    from smarttuner.rollout.sampling import _nucleus_candidates

    torch.manual_seed(1)
    scaled = torch.randn(64, 5000) * torch.linspace(0.5, 6.0, 64).unsqueeze(1)  # flat to peaked
    ids, weights, complete = _nucleus_candidates(scaled, top_p, candidates=128)
    assert 0 < int(complete.sum()) < 64  # both paths are exercised
    full = torch.isfinite(top_p_filter(scaled, top_p))
    for row in complete.nonzero().squeeze(1).tolist():
        ours = set(ids[row][weights[row] > 0].tolist())
        assert ours == set(full[row].nonzero().squeeze(1).tolist())


@pytest.mark.parametrize("candidates", [2, 256])  # fallback path, candidate path
def test_top_p_draws_follow_the_renormalised_nucleus(candidates: int) -> None:
    # probabilities 0.4, 0.3, 0.2, 0.1; top_p 0.8 keeps the first three -> 4/9, 3/9, 2/9
    logits = torch.log(torch.tensor([0.4, 0.3, 0.2, 0.1])).expand(20000, 4)
    gen = torch.Generator().manual_seed(3)
    draws = sample_next(logits, 1.0, 0.8, gen, candidates=candidates)
    freq = torch.bincount(draws, minlength=4).float() / 20000
    assert freq.tolist() == pytest.approx([4 / 9, 3 / 9, 2 / 9, 0.0], abs=0.012)
