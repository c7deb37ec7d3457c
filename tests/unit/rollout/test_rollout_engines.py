"""The fast KV-cache engine against transformers `generate` on the tiny model: same greedy
tokens, early finishers, stop strings, reproducible sampling, prompt-major order."""

from __future__ import annotations

import pytest
import torch

from smarttuner.rollout import SamplingParams
from smarttuner.rollout.fast import generate_fast
from smarttuner.rollout.hf import generate_hf

pytestmark = pytest.mark.usefixtures("single_thread")


QUESTIONS = [
    "What is 3 + 4?",
    "Consider these statements: No students are humans. Does it",
    "If",
    "You are a careful reasoner. First think about the problem step by step inside tags.",
]


@pytest.fixture()
def sharp_model(tiny_model):
    """The tiny model with larger random weights, so greedy decoding does not just repeat the
    last token (the default 0.02 init makes every logit nearly the same)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in tiny_model.parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return tiny_model


@pytest.fixture()
def prompts(tiny_tokenizer) -> list[list[int]]:
    ids = [tiny_tokenizer.encode(q) for q in QUESTIONS]
    assert len({len(p) for p in ids}) == len(ids)  # all different lengths
    return ids


def assert_same_batch(a, b) -> None:
    assert torch.equal(a.completion_ids, b.completion_ids)
    assert torch.equal(a.completion_mask, b.completion_mask)
    assert torch.equal(a.truncated, b.truncated)
    assert torch.equal(a.prompt_ids, b.prompt_ids)
    assert torch.equal(a.prompt_mask, b.prompt_mask)
    assert a.texts == b.texts


def test_greedy_fast_equals_hf(sharp_model, tiny_tokenizer, prompts) -> None:
    params = SamplingParams(max_new_tokens=16, temperature=0.0)
    fast = generate_fast(sharp_model, tiny_tokenizer, prompts, 2, params)
    hf = generate_hf(sharp_model, tiny_tokenizer, prompts, 2, params)
    assert_same_batch(fast, hf)
    assert fast.completion_ids.shape == (8, 16)
    assert len(set(fast.texts)) == 4  # the prompts really lead to different completions


def test_greedy_fast_equals_hf_with_early_finishers(sharp_model, tiny_tokenizer, prompts) -> None:
    # make a token the model emits early in some rows an extra EOS id, so rows end at different
    # steps and the fast engine drops them from its cache mid-way
    params = SamplingParams(max_new_tokens=16, temperature=0.0)
    plain = generate_fast(sharp_model, tiny_tokenizer, prompts, 2, params)
    early = int(plain.completion_ids[0, 2])
    sharp_model.generation_config.eos_token_id = [tiny_tokenizer.eos_token_id, early]
    fast = generate_fast(sharp_model, tiny_tokenizer, prompts, 2, params)
    hf = generate_hf(sharp_model, tiny_tokenizer, prompts, 2, params)
    assert_same_batch(fast, hf)
    lengths = fast.lengths.tolist()
    assert lengths[0] == lengths[1] == 3  # ended on the new EOS (kept, mask included)
    assert fast.completion_ids[0, 2].item() == early
    assert len(set(lengths)) > 1
    for row, length in enumerate(lengths):
        ended = length < 16 or early in fast.completion_ids[row].tolist()
        assert fast.truncated[row].item() == (not ended)
        assert fast.completion_mask[row].tolist() == [1] * length + [0] * (16 - length)


def test_min_new_tokens_holds_eos_back_in_both_engines(sharp_model, tiny_tokenizer, prompts):
    # as above, a token emitted at step 3 of the first rows is made an EOS id; with
    # min_new_tokens=6 no row may end before 6 tokens, and the engines still agree
    plain = generate_fast(sharp_model, tiny_tokenizer, prompts, 2, SamplingParams(16, 0.0))
    early = int(plain.completion_ids[0, 2])
    sharp_model.generation_config.eos_token_id = [tiny_tokenizer.eos_token_id, early]
    params = SamplingParams(max_new_tokens=16, temperature=0.0, min_new_tokens=6)
    fast = generate_fast(sharp_model, tiny_tokenizer, prompts, 2, params)
    assert_same_batch(fast, generate_hf(sharp_model, tiny_tokenizer, prompts, 2, params))
    assert fast.lengths.min().item() >= 6
    assert early not in fast.completion_ids[:, :5].flatten().tolist()
    unforced = generate_fast(sharp_model, tiny_tokenizer, prompts, 2, SamplingParams(16, 0.0))
    assert unforced.lengths[0].item() == 3  # without it the first rows end at step 3
    # sampled: every completion is exactly max_new_tokens long when min = max
    full = SamplingParams(max_new_tokens=12, temperature=1.0, min_new_tokens=12)
    batch = generate_fast(sharp_model, tiny_tokenizer, prompts, 3, full, torch.Generator())
    assert batch.lengths.tolist() == [12] * 12


@pytest.mark.parametrize("stops", [("Yes",), ("kthi", "Cal")])
def test_greedy_fast_equals_hf_with_stop_strings(
    sharp_model, tiny_tokenizer, prompts, stops
) -> None:
    params = SamplingParams(max_new_tokens=16, temperature=0.0, stop_strings=stops)
    fast = generate_fast(sharp_model, tiny_tokenizer, prompts, 2, params)
    hf = generate_hf(sharp_model, tiny_tokenizer, prompts, 2, params)
    assert_same_batch(fast, hf)
    unstopped = generate_fast(sharp_model, tiny_tokenizer, prompts, 2, SamplingParams(16, 0.0))
    hits = 0
    for row, text in enumerate(fast.texts):
        full = unstopped.texts[row]
        if any(s in full for s in stops):
            hits += 1
            # cut at the token that completes the stop string: it is in the text, and was
            # not there one token earlier
            length = int(fast.lengths[row])
            shorter = tiny_tokenizer.decode(fast.completion_ids[row, : length - 1].tolist())
            assert any(s in text for s in stops), text
            assert not any(s in shorter for s in stops), shorter
            assert full.startswith(text) and len(text) < len(full)
            assert not fast.truncated[row]
        else:
            assert text == full
    assert hits >= 2  # the case really exercises the stop strings


def test_groups_are_prompt_major_and_padding_invariant(sharp_model, tiny_tokenizer, prompts):
    params = SamplingParams(max_new_tokens=10, temperature=0.0)
    batch = generate_fast(sharp_model, tiny_tokenizer, prompts, 3, params)
    assert batch.completion_ids.shape[0] == 12
    for i, prompt in enumerate(prompts):
        alone = generate_fast(sharp_model, tiny_tokenizer, [prompt], 1, params)
        for row in range(3 * i, 3 * i + 3):
            real = batch.prompt_ids[row][batch.prompt_mask[row].bool()]
            assert real.tolist() == prompt
            length = int(batch.lengths[row])
            assert (
                batch.completion_ids[row, :length].tolist()
                == alone.completion_ids[0, : int(alone.lengths[0])].tolist()
            )


def test_seeded_sampling_is_reproducible(sharp_model, tiny_tokenizer, prompts) -> None:
    params = SamplingParams(max_new_tokens=12, temperature=1.0, top_p=0.95)
    runs = [
        generate_fast(
            sharp_model, tiny_tokenizer, prompts, 2, params, torch.Generator().manual_seed(s)
        )
        for s in (0, 0, 1)
    ]
    assert_same_batch(runs[0], runs[1])
    assert not torch.equal(runs[0].completion_ids, runs[2].completion_ids)
    # samples of one group differ from each other (the cache is shared, the draws are not)
    assert runs[0].texts[0] != runs[0].texts[1] or runs[0].texts[2] != runs[0].texts[3]
    # rows stay grouped by prompt
    for row in range(8):
        assert batch_prompt(runs[0], row) == prompts[row // 2]


def batch_prompt(batch, row: int) -> list[int]:
    return batch.prompt_ids[row][batch.prompt_mask[row].bool()].tolist()


def test_hf_engine_with_a_generator_is_reproducible(sharp_model, tiny_tokenizer, prompts):
    params = SamplingParams(max_new_tokens=8, temperature=1.0, top_p=0.95)
    a = generate_hf(
        sharp_model, tiny_tokenizer, prompts, 2, params, torch.Generator().manual_seed(3)
    )
    b = generate_hf(
        sharp_model, tiny_tokenizer, prompts, 2, params, torch.Generator().manual_seed(3)
    )
    assert_same_batch(a, b)


def test_tiny_top_p_is_greedy_in_both_engines(sharp_model, tiny_tokenizer, prompts) -> None:
    greedy = generate_fast(sharp_model, tiny_tokenizer, prompts, 2, SamplingParams(10, 0.0))
    params = SamplingParams(max_new_tokens=10, temperature=0.7, top_p=1e-6)
    fast = generate_fast(sharp_model, tiny_tokenizer, prompts, 2, params, torch.Generator())
    hf = generate_hf(sharp_model, tiny_tokenizer, prompts, 2, params, torch.Generator())
    assert_same_batch(fast, greedy)
    assert_same_batch(hf, greedy)


@pytest.mark.parametrize("rows", [1, 3])
def test_prefill_in_row_chunks_decodes_the_same(
    sharp_model, tiny_tokenizer, prompts, monkeypatch, rows
) -> None:
    """Prompts prefilled a few at a time (caches joined) decode exactly as in one prefill, for
    greedy decoding and for seeded sampling with early finishers."""
    import smarttuner.rollout.fast as fast_module

    model = sharp_model.double()
    greedy = SamplingParams(max_new_tokens=12, temperature=0.0)
    sampled = SamplingParams(max_new_tokens=12, temperature=1.0, stop_strings=("a",))
    want = [
        generate_fast(model, tiny_tokenizer, prompts, 2, p, torch.Generator().manual_seed(3))
        for p in (greedy, sampled)
    ]
    monkeypatch.setattr(fast_module, "PREFILL_ROWS", rows)
    got = [
        generate_fast(model, tiny_tokenizer, prompts, 2, p, torch.Generator().manual_seed(3))
        for p in (greedy, sampled)
    ]
    for a, b in zip(got, want, strict=True):
        assert_same_batch(a, b)
