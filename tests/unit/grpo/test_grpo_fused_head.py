"""The chunked hidden-state -> token log-prob path equals log_softmax over full logits."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from smarttuner.grpo import fused_head
from smarttuner.grpo.buffer import Experience, collate
from smarttuner.grpo.fused_head import plain_head, token_logprobs
from smarttuner.grpo.logprobs import bucketed_logprobs, completion_logprobs
from tests.unit.grpo.test_grpo_logprobs import CASES, sharpen

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunk_rows", [1, 3, 512])
@pytest.mark.parametrize("keep_chunks", [0, 1, None])  # softmax kept for none, one, all chunks
def test_token_logprobs_and_gradients_equal_full_log_softmax(
    temperature, chunk_rows, keep_chunks, monkeypatch
) -> None:
    if keep_chunks is not None:  # float64 chunk of chunk_rows x 11 vocabulary entries
        monkeypatch.setattr(fused_head, "KEEP_BYTES", keep_chunks * chunk_rows * 11 * 8)
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(7, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(11, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 11, (7,), generator=gen)
    upstream = torch.randn(7, generator=gen, dtype=torch.float64)

    full = torch.log_softmax(hidden @ weight.T / temperature, dim=-1)[torch.arange(7), index]
    (full * upstream).sum().backward()
    want = (full.detach(), hidden.grad.clone(), weight.grad.clone())
    hidden.grad = weight.grad = None

    fused = token_logprobs(hidden, weight, index, temperature, chunk_rows)
    (fused * upstream).sum().backward()
    assert fused.dtype == torch.float64  # float32 at least, float64 for float64 inputs
    torch.testing.assert_close(fused, want[0])
    torch.testing.assert_close(hidden.grad, want[1])
    torch.testing.assert_close(weight.grad, want[2])


def test_kept_softmax_cannot_be_reused_by_a_second_backward() -> None:
    """The backward pass consumes the kept numerators in place; autograd's version check
    turns a second backward over the same graph into an error, never a wrong gradient."""
    hidden = torch.randn(4, 3, requires_grad=True)
    logp = token_logprobs(hidden, torch.randn(6, 3), torch.tensor([0, 5, 2, 2]))
    logp.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        logp.sum().backward()


def test_frozen_weight_gets_no_gradient() -> None:
    hidden = torch.randn(4, 3, requires_grad=True)
    weight = torch.randn(6, 3)
    token_logprobs(hidden, weight, torch.tensor([0, 5, 2, 2])).sum().backward()
    assert hidden.grad is not None and weight.grad is None
    assert token_logprobs(hidden[:0], weight, torch.tensor([], dtype=torch.long)).shape == (0,)


def _batch(pad: int = 2):
    items = [Experience(torch.tensor(p), torch.tensor(c), None, None, 0.0, 0) for p, c in CASES]
    return collate(items, pad)


@pytest.mark.parametrize("share_prompts", [True, False])
def test_fused_completion_logprobs_equal_logits_path_with_gradients(
    tiny_model, share_prompts
) -> None:
    """Full fine-tuning in float64: values and every parameter's gradient (including the
    tied embedding, which the fused path reaches through the head weight) agree."""
    model = sharpen(tiny_model).double()
    assert plain_head(model) is model.lm_head
    mb = _batch()
    args = (mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mb.completion_mask, 0.7)
    upstream = torch.randn(mb.completion_ids.shape, generator=torch.Generator().manual_seed(3))

    def run(fused: bool):
        model.zero_grad()
        logp = completion_logprobs(model, *args, share_prompts=share_prompts, fused=fused)
        logp = logp * mb.completion_mask
        (logp * upstream).sum().backward()
        return logp.detach(), [p.grad.clone() for p in model.parameters()]

    plain, plain_grads = run(False)
    fused, fused_grads = run(True)
    torch.testing.assert_close(fused.float(), plain.float(), atol=1e-6, rtol=1e-6)
    assert not fused[~mb.completion_mask.bool()].any()  # 0 at padding
    for a, b in zip(fused_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_fused_lora_bf16_autocast_matches_logits_path(tiny_model) -> None:
    """The training set-up: LoRA adapters, bfloat16 autocast. Both paths round the same way
    (bf16 logits out of the head matmul, float32 log-softmax), so they agree closely."""
    model = get_peft_model(
        sharpen(tiny_model), LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    )
    assert plain_head(model) is not None  # the head is not a LoRA target
    mb = _batch()
    args = (mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mb.completion_mask, 1.0)

    def run(fused: bool):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logp = bucketed_logprobs(model, *args) if fused else None
            if not fused:
                logp = completion_logprobs(model, *args, fused=False) * mb.completion_mask
        logp.sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        return logp.detach(), grads

    plain, plain_grads = run(False)
    fused, fused_grads = run(True)
    torch.testing.assert_close(fused, plain, atol=2e-2, rtol=0)
    for a, b in zip(fused_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, atol=2e-2, rtol=5e-2)


def test_heads_that_are_not_plain_keep_the_logits_path(tiny_model) -> None:
    model = get_peft_model(tiny_model, LoraConfig(r=2, target_modules=["lm_head"]))
    assert plain_head(model) is None  # a LoRA-wrapped head
    with pytest.raises(ValueError, match="plain linear output head"):
        mb = _batch()
        args = (mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mb.completion_mask)
        completion_logprobs(model, *args, fused=True)
