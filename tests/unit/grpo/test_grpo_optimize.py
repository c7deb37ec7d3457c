"""Training passes: accumulation windows, optimizer steps across passes, the non-finite guard
and the direction of an update, on the tiny model with hand-built experiences."""

from __future__ import annotations

import copy

import pytest
import torch

from smarttuner.grpo.buffer import Experience, collate
from smarttuner.grpo.logprobs import completion_logprobs
from smarttuner.grpo.optimize import (
    LossSettings,
    NonFiniteLossError,
    OptimState,
    _windows,
    train_pass,
)

pytestmark = pytest.mark.usefixtures("single_thread")


class CountingSGD(torch.optim.SGD):
    """SGD that counts its steps and keeps a copy of the gradients it stepped with."""

    def __init__(self, params, lr: float) -> None:
        super().__init__(params, lr=lr)
        self.steps = 0
        self.seen_grads: list[list[torch.Tensor]] = []

    def step(self, closure=None):  # noqa: ANN001
        self.steps += 1
        self.seen_grads.append(
            [p.grad.detach().clone() for g in self.param_groups for p in g["params"]]
        )
        return super().step(closure)


def settings(k: int, loss_type: str = "grpo", max_grad_norm: float = 1.0) -> LossSettings:
    return LossSettings(
        epsilon=0.2,
        epsilon_high=None,
        beta=0.0,
        loss_type=loss_type,
        max_completion_length=4,
        temperature=1.0,
        max_grad_norm=max_grad_norm,
        gradient_accumulation_steps=k,
    )


def make_optimizer(model: torch.nn.Module, lr: float = 1e-2):
    opt = CountingSGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


@torch.no_grad()
def experience(
    model: torch.nn.Module,
    prompt: list[int],
    completion: list[int],
    advantage: float,
    nan: bool = False,
) -> Experience:
    """An on-policy experience: old log-probs from the model itself (NaN when asked)."""
    p = torch.tensor([prompt])
    c = torch.tensor([completion])
    old = completion_logprobs(model, p, torch.ones_like(p), c, torch.ones_like(c))[0]
    if nan:
        old = torch.full_like(old, float("nan"))
    return Experience(p[0], c[0], old, None, advantage, iteration=0)


def batches_of(model, n: int, seed: int = 0, nan_at: tuple[int, ...] = ()) -> list:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for b in range(n):
        items = []
        for _ in range(2):
            plen = int(torch.randint(2, 6, (1,), generator=gen))
            clen = 1 + b % 4  # minibatches differ in their token counts
            ids = torch.randint(3, 300, (plen + clen,), generator=gen).tolist()
            adv = float(torch.randn(1, generator=gen))
            items.append(experience(model, ids[:plen], ids[plen:], adv, nan=b in nan_at))
        out.append(items)
    return out


@pytest.mark.parametrize(
    ("n", "size", "start", "expected"),
    [
        (5, 2, 0, [[0, 1], [2, 3], [4]]),
        (5, 2, 1, [[0], [1, 2], [3, 4]]),
        (5, 3, 0, [[0, 1, 2], [3, 4]]),
        (5, 3, 2, [[0], [1, 2, 3], [4]]),
        (2, 4, 1, [[0, 1]]),  # the carried window is still not complete
        (3, 1, 0, [[0], [1], [2]]),
        (0, 2, 0, []),
    ],
)
def test_windows(n: int, size: int, start: int, expected: list[list[int]]) -> None:
    assert _windows(list(range(n)), size, start) == expected


def test_accumulation_steps_carry_over_between_passes(tiny_model, tiny_tokenizer) -> None:
    # k = 3: pass 1 has 4 minibatches -> 1 step, 1 carried; pass 2 has 5 -> windows [2], [3]
    # -> 2 more steps; 9 minibatches / 3 = 3 steps in all, nothing left over
    opt, sched = make_optimizer(tiny_model)
    state = OptimState()
    pad = tiny_tokenizer.pad_token_id
    stats = train_pass(tiny_model, opt, sched, batches_of(tiny_model, 4), settings(3), state, pad)
    assert opt.steps == 1 and state.optimizer_steps == 1 and stats["optimizer_steps"] == 1
    assert state.accumulated == 1
    # the carried minibatch's gradient is kept for the next step
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_model.parameters())
    stats = train_pass(
        tiny_model, opt, sched, batches_of(tiny_model, 5, seed=1), settings(3), state, pad
    )
    assert opt.steps == 3 and state.optimizer_steps == 3
    assert state.accumulated == 0
    assert all(torch.isfinite(torch.tensor(v)) for k, v in stats.items() if k != "grad_norm")


@pytest.mark.parametrize("k", [1, 2, 4])
def test_number_of_steps_in_one_pass(tiny_model, tiny_tokenizer, k: int) -> None:
    opt, sched = make_optimizer(tiny_model)
    state = OptimState()
    train_pass(
        tiny_model,
        opt,
        sched,
        batches_of(tiny_model, 4),
        settings(k),
        state,
        tiny_tokenizer.pad_token_id,
    )
    assert opt.steps == 4 // k
    assert sched.last_epoch == 4 // k  # the scheduler steps with the optimizer


def _steps_split_in_two_passes(model, batches, loss_type: str, pad: int) -> list[torch.Tensor]:
    opt, sched = make_optimizer(model)
    state = OptimState()
    s = settings(2, loss_type, max_grad_norm=1e9)
    train_pass(model, opt, sched, batches[:1], s, state, pad)
    assert opt.steps == 0
    train_pass(model, opt, sched, batches[1:], s, state, pad)
    assert opt.steps == 1
    return opt.seen_grads[0]


def _steps_in_one_pass(model, batches, loss_type: str, pad: int) -> list[torch.Tensor]:
    opt, sched = make_optimizer(model)
    train_pass(model, opt, sched, batches, settings(2, loss_type, 1e9), OptimState(), pad)
    assert opt.steps == 1
    return opt.seen_grads[0]


@pytest.mark.parametrize(
    "loss_type",
    [
        "grpo",
        "bnpo",
        "dr_grpo",
        "dapo",
    ],
)
def test_a_window_split_across_passes_gives_the_same_step(
    tiny_model, tiny_tokenizer, loss_type: str
) -> None:
    # the same two minibatches in one accumulation window, once in one pass and once split
    # over two passes (the carry-over), must give the same gradient at the step
    batches = batches_of(tiny_model, 2, seed=3)
    assert sum(e.completion_ids.numel() for e in batches[0]) != sum(
        e.completion_ids.numel() for e in batches[1]
    )
    pad = tiny_tokenizer.pad_token_id
    split = _steps_split_in_two_passes(copy.deepcopy(tiny_model), batches, loss_type, pad)
    whole = _steps_in_one_pass(copy.deepcopy(tiny_model), batches, loss_type, pad)
    for a, b in zip(split, whole, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_a_nan_loss_is_skipped(tiny_model, tiny_tokenizer) -> None:
    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    opt, sched = make_optimizer(tiny_model)
    state = OptimState()
    pad = tiny_tokenizer.pad_token_id
    train_pass(
        tiny_model, opt, sched, batches_of(tiny_model, 1, nan_at=(0,)), settings(1), state, pad
    )
    assert opt.steps == 0 and state.nonfinite_in_a_row == 1
    for n, p in tiny_model.named_parameters():
        assert torch.equal(p, before[n]), n
    # a good minibatch afterwards steps normally and resets the streak
    train_pass(tiny_model, opt, sched, batches_of(tiny_model, 1, seed=1), settings(1), state, pad)
    assert opt.steps == 1 and state.nonfinite_in_a_row == 0
    assert all(torch.isfinite(p).all() for p in tiny_model.parameters())


def test_nan_streak_broken_by_a_good_step_does_not_raise(tiny_model, tiny_tokenizer) -> None:
    opt, sched = make_optimizer(tiny_model)
    state = OptimState()
    batches = batches_of(tiny_model, 5, nan_at=(0, 2, 3))  # nan, ok, nan, nan, ok
    train_pass(tiny_model, opt, sched, batches, settings(1), state, tiny_tokenizer.pad_token_id)
    assert opt.steps == 2 and state.nonfinite_in_a_row == 0


def test_three_nan_losses_in_a_row_raise(tiny_model, tiny_tokenizer) -> None:
    opt, sched = make_optimizer(tiny_model)
    batches = batches_of(tiny_model, 4, nan_at=(1, 2, 3))
    with pytest.raises(NonFiniteLossError, match="3 non-finite loss"):
        train_pass(
            tiny_model, opt, sched, batches, settings(1), OptimState(), tiny_tokenizer.pad_token_id
        )


def test_the_nan_streak_carries_across_passes(tiny_model, tiny_tokenizer) -> None:
    opt, sched = make_optimizer(tiny_model)
    state = OptimState()
    pad = tiny_tokenizer.pad_token_id
    nans = batches_of(tiny_model, 3, nan_at=(0, 1, 2))
    train_pass(tiny_model, opt, sched, nans[:2], settings(1), state, pad)
    assert state.nonfinite_in_a_row == 2
    with pytest.raises(NonFiniteLossError):
        train_pass(tiny_model, opt, sched, nans[2:], settings(1), state, pad)


@pytest.mark.parametrize("advantage", [1.0, -1.0])
def test_one_step_moves_the_completion_logprob_with_the_advantage(
    tiny_model, tiny_tokenizer, advantage: float
) -> None:
    prompt, completion = [5, 17, 42, 9], [100, 7, 250]
    item = experience(tiny_model, prompt, completion, advantage)
    mb = collate([item], tiny_tokenizer.pad_token_id)
    opt, sched = make_optimizer(tiny_model, lr=0.5)
    train_pass(tiny_model, opt, sched, [[item]], settings(1), OptimState(), 0)
    with torch.no_grad():
        after = completion_logprobs(
            tiny_model, mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mb.completion_mask
        )
    change = (after.sum() - item.old_logprobs.sum()).item()
    assert change * advantage > 0


def test_missing_old_logprobs_train_as_exactly_on_policy(tiny_model, tiny_tokenizer) -> None:
    # old_logprobs None (the trainer skips that forward pass when training is on-policy) must
    # give the same update as old log-probs computed by the same weights
    with_old = batches_of(tiny_model, 2, seed=5)
    without = [
        [Experience(e.prompt_ids, e.completion_ids, None, None, e.advantage, 0) for e in mb]
        for mb in with_old
    ]
    pad = tiny_tokenizer.pad_token_id
    grads = []
    for batches in (with_old, without):
        model = copy.deepcopy(tiny_model)
        opt, sched = make_optimizer(model)
        stats = train_pass(model, opt, sched, batches, settings(2), OptimState(), pad)
        assert stats["clip_fraction"] == 0.0
        grads.append(opt.seen_grads[0])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
