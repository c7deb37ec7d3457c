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
