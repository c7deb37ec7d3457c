"""'sdpa_gqa' attention equals transformers' 'sdpa' on padded batches, values and gradients."""

from __future__ import annotations

import copy

import pytest
import torch

from smarttuner import attention
from smarttuner.attention import NAME, use_grouped_sdpa
from smarttuner.grpo.buffer import Experience, collate
from smarttuner.grpo.logprobs import completion_logprobs
from tests.unit.grpo.test_grpo_logprobs import CASES, sharpen

pytestmark = pytest.mark.usefixtures("single_thread")


def _padded_batch():
    items = [Experience(torch.tensor(p), torch.tensor(c), None, None, 0.0, 0) for p, c in CASES]
    return collate(items, 2)


def test_grouped_sdpa_equals_sdpa_with_a_padding_mask(tiny_model, monkeypatch) -> None:
    grouped_calls = []
    sdpa = attention.F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        grouped_calls.append(kwargs.get("enable_gqa", False))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", spy)
    base = sharpen(tiny_model).double()
    assert base.config.num_key_value_heads < base.config.num_attention_heads  # grouped heads
    assert base.config._attn_implementation == "sdpa"
    grouped = copy.deepcopy(base)
    use_grouped_sdpa(grouped, torch.device("cpu"))
    assert grouped.config._attn_implementation == NAME
    mb = _padded_batch()
    upstream = torch.randn(mb.completion_ids.shape, generator=torch.Generator().manual_seed(0))

    def run(model, share_prompts):
        model.zero_grad()
        args = (mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mb.completion_mask, 0.7)
        logp = completion_logprobs(model, *args, share_prompts=share_prompts)
        (logp * mb.completion_mask * upstream).sum().backward()
        return logp.detach(), [p.grad.clone() for p in model.parameters()]

    for share_prompts in (True, False):  # with a KV cache and without
        want, want_grads = run(base, share_prompts)
        got, got_grads = run(grouped, share_prompts)
        torch.testing.assert_close(got, want)
        for a, b in zip(got_grads, want_grads, strict=True):
            torch.testing.assert_close(a, b)
    assert any(grouped_calls)  # the masked multi-token forwards took the grouped path


def test_only_cpu_sdpa_models_switch(tiny_model) -> None:
    model = copy.deepcopy(tiny_model)
    use_grouped_sdpa(model, torch.device("cuda"))
    assert model.config._attn_implementation == "sdpa"
    model.set_attn_implementation("eager")
    use_grouped_sdpa(model, torch.device("cpu"))
    assert model.config._attn_implementation == "eager"


def _grouped_inputs(dtype: torch.dtype, queries: int = 5, keys: int = 9):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(shape, generator=gen, dtype=dtype).requires_grad_()
        for shape in ((3, 6, queries, 8), (3, 2, keys, 8), (3, 2, keys, 8))
    )
    mask = torch.ones(3, 1, queries, keys, dtype=torch.bool)
    mask[..., keys - queries :] = torch.tril(torch.ones(queries, queries, dtype=torch.bool))
    mask[0, ..., :6] = False  # left padding: row 0's first query rows see no key at all
    return q, k, v, mask


def test_grouped_matmul_attention_equals_sdpa_with_repeated_heads() -> None:
    q, k, v, mask = _grouped_inputs(torch.float64)
    live = mask.any(-1, keepdim=True).expand(-1, 6, -1, 8)  # query rows with a key to read
    upstream = torch.randn(q.shape, generator=torch.Generator().manual_seed(1), dtype=q.dtype)

    def run(attend):
        for t in (q, k, v):
            t.grad = None
        out = attend()
        (out * upstream * live).sum().backward()
        return out.detach(), [t.grad.clone() for t in (q, k, v)]

    got, got_grads = run(lambda: attention.grouped_matmul_attention(q, k, v, mask, 0.3))
    want, want_grads = run(
        lambda: torch.nn.functional.scaled_dot_product_attention(
            q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1), attn_mask=mask, scale=0.3
        )
    )
    torch.testing.assert_close(got[live], want[live])
    assert torch.isfinite(got).all()  # rows without a key average instead of giving NaN
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_low_precision_masked_forwards_take_the_grouped_matmul_path(
    tiny_model, monkeypatch
) -> None:
    calls = []
    real = attention.grouped_matmul_attention

    def spy(query, *args):
        calls.append(query.dtype)
        return real(query, *args)

    monkeypatch.setattr(attention, "grouped_matmul_attention", spy)
    base = sharpen(tiny_model)
    grouped = copy.deepcopy(base)
    use_grouped_sdpa(grouped, torch.device("cpu"))
    mb = _padded_batch()
    args = (mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mb.completion_mask, 0.7)
    with torch.no_grad():
        want = completion_logprobs(base, *args)  # float32, transformers' "sdpa"
        assert not calls  # float32 keeps SDPA's kernel
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = completion_logprobs(grouped, *args)
            stock = completion_logprobs(base, *args)
    assert calls and set(calls) == {torch.bfloat16}  # autocast's dtype, not the float32 queries
    live = mb.completion_mask.bool()
    # as close to float32 as transformers' own bf16 attention is
    ours, theirs = ((x - want)[live].abs().mean() for x in (got, stock))
    assert ours < 2 * theirs + 1e-3


def test_large_score_tensors_keep_the_flash_kernel(tiny_model, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(attention, "grouped_matmul_attention", lambda *a: calls.append(1))
    monkeypatch.setattr(attention, "GROUPED_MAX_SCORES", 0)  # every forward is "too large"
    model = copy.deepcopy(tiny_model)
    use_grouped_sdpa(model, torch.device("cpu"))
    mb = _padded_batch()
    args = (mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mb.completion_mask, 0.7)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = completion_logprobs(model, *args)
    assert not calls and torch.isfinite(out).all()
