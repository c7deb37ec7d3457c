"""Log-probabilities of chosen tokens straight from the last hidden states, chunk by chunk.

The usual path materialises logits for every completion position ([N, C, V] with a ~49k
vocabulary: ~750 MB in float32 for 48 completions of 80 tokens), casts them to float32,
takes a log-softmax and keeps one entry per row; autograd then stores them for the backward
pass. `token_logprobs` computes the same numbers from the hidden states [M, d] and the output
embedding [V, d], `chunk_rows` rows at a time, keeping only each row's log-sum-exp; the
backward pass recomputes a chunk's logits and turns them into the gradient of the hidden
states (and of the embedding when it is trained) without ever holding more than one chunk.
(Liger-Kernel's fused linear cross-entropy does this on GPUs; this is the CPU-friendly,
pure-PyTorch form.)

Work per chunk is one matmul and a few in-place passes over the [m, V] block: the logits are
cast to float32 once, divided by the temperature, shifted by their row max and exponentiated
in place (a log-sum-exp without the temporaries of `torch.logsumexp`). When the gradient is
wanted, those softmax numerators are kept for the backward pass, up to `KEEP_BYTES` per call
(~100 MB per 512 rows in float32); the backward then needs one multiply, one scatter and the
matmul into the hidden states. Chunks beyond the budget are recomputed from the hidden states
in backward. On `smarttuner bench`'s configuration (torch.profiler, ad hoc) the head's
[512, 49k] element-wise passes took ~3.7 s of a ~30 s train pass before, under 1 s after.

Numerics follow the unfused path: logits come out of a matmul in the compute dtype (bfloat16
under autocast, else the weights' dtype), are divided by the temperature in float32, and the
gradient of the logits is cast back to the compute dtype before the matmul into the hidden
states, exactly as autocast does for `lm_head`.
"""

from __future__ import annotations

import torch

from smarttuner.precision import compute_dtype

# Output heads that are a plain `hidden @ W.T` (no soft-capping, scaling or bias) in these
# model families; others keep the logits path.
PLAIN_HEAD_MODEL_TYPES = frozenset(
    {"llama", "mistral", "qwen2", "qwen3", "smollm3", "phi3", "olmo", "olmo2"}
)
CHUNK_ROWS = 512
KEEP_BYTES = 1 << 30  # softmax numerators kept for backward per call; the rest is recomputed


def _scaled_logits(
    hidden: torch.Tensor, weight: torch.Tensor, temperature: float
) -> torch.Tensor:  # [m, V], at least float32, a fresh tensor the caller may overwrite
    logits = hidden @ weight.T
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return logits.div_(temperature) if temperature != 1.0 else logits


def _exp_shifted(scaled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Overwrite `scaled` [m, V] with exp(scaled - row max). Returns those numerators, the
    rows' log-sum-exp (max + log(sum)) and 1 / sum, so that softmax = numerators / sum."""
    top = scaled.amax(dim=-1, keepdim=True)
    numerators = scaled.sub_(top).exp_()
    sums = numerators.sum(dim=-1)
    return numerators, top.squeeze(-1) + sums.log(), sums.reciprocal()


class _TokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, index, temperature, chunk_rows, keep):  # noqa: ANN001
        dtype = compute_dtype(weight)
        kept: list[torch.Tensor] = []
        budget = KEEP_BYTES if keep else 0
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)  # [V, d]
            precision = torch.promote_types(dtype, torch.float32)
            out = torch.empty(hidden.shape[0], dtype=precision, device=hidden.device)
            lse = torch.empty_like(out)
            inv_sum = torch.empty_like(out)
            for start in range(0, hidden.shape[0], chunk_rows):
                rows = slice(start, start + chunk_rows)
                scaled = _scaled_logits(hidden[rows].to(dtype), w, temperature)  # [m, V]
                picked = scaled.gather(-1, index[rows].unsqueeze(-1)).squeeze(-1)
                numerators, lse[rows], inv_sum[rows] = _exp_shifted(scaled)
                out[rows] = picked - lse[rows]
                if numerators.nbytes <= budget:
                    budget -= numerators.nbytes
                    kept.append(numerators)
        ctx.save_for_backward(hidden, weight, index, lse, inv_sum, *kept)
        ctx.temperature, ctx.chunk_rows, ctx.dtype = temperature, chunk_rows, dtype
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001
        hidden, weight, index, lse, inv_sum, *kept = ctx.saved_tensors
        dtype, temperature = ctx.dtype, ctx.temperature
        want_hidden, want_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = torch.zeros_like(hidden) if want_hidden else None
        grad_weight = (
            torch.zeros_like(weight, dtype=torch.promote_types(weight.dtype, torch.float32))
            if want_weight
            else None
        )
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            for i, start in enumerate(range(0, hidden.shape[0], ctx.chunk_rows)):
                rows = slice(start, start + ctx.chunk_rows)
                h = hidden[rows].to(dtype)  # [m, d]
                g = grad_out[rows].to(lse.dtype) / temperature  # [m]
                # d logp / d logits = (onehot(index) - softmax) / temperature
                if i < len(kept):  # softmax = numerators / sum
                    grad_logits = kept[i].mul_((-g * inv_sum[rows])[:, None])
                else:
                    grad_logits = _scaled_logits(h, w, temperature)
                    grad_logits.sub_(lse[rows, None]).exp_().mul_(-g[:, None])
                grad_logits.scatter_add_(-1, index[rows, None], g[:, None])
                grad_logits = grad_logits.to(dtype)  # [m, V]
                if want_hidden:
                    grad_hidden[rows] = (grad_logits @ w).to(hidden.dtype)
                if want_weight:
                    grad_weight.add_(grad_logits.T.to(grad_weight) @ h.to(grad_weight))
        if want_weight:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None, None, None


def token_logprobs(
    hidden: torch.Tensor,  # [M, d] last hidden states (after the final norm)
    weight: torch.Tensor,  # [V, d] output embedding
    index: torch.Tensor,  # [M] chosen token ids
    temperature: float = 1.0,
    chunk_rows: int = CHUNK_ROWS,
) -> torch.Tensor:  # [M], float32 (float64 for float64 inputs)
    """log_softmax(hidden @ weight.T / temperature)[row, index[row]], differentiable in hidden
    and weight, never holding more than `chunk_rows` rows of logits (plus, when a gradient
    is wanted, up to `KEEP_BYTES` of softmax numerators until backward)."""
    if hidden.shape[0] == 0:
        return hidden.new_zeros(0, dtype=torch.promote_types(hidden.dtype, torch.float32))
    keep = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    return _TokenLogprobs.apply(hidden, weight, index, float(temperature), chunk_rows, keep)


def plain_head(model: torch.nn.Module) -> torch.nn.Linear | None:
    """The output head if it is a bias-free `nn.Linear` of a family whose logits are exactly
    `hidden @ W.T` (and not wrapped, e.g. by a LoRA layer), else None."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in PLAIN_HEAD_MODEL_TYPES:
        return None
    head = model.get_output_embeddings()
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return None
    return head
