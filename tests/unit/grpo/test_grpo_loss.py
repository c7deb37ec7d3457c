"""The GRPO objective: k3 KL, the clipped surrogate, the aggregations and `grpo_loss`.

Expected values are worked out by hand in the comments. The shared 2×3 case:

    ratios ρ = exp(logπ - logπ_old) = [[1.5, 1.1, 0.5],
                                       [1.5, 1.1, 0.5]]
    advantages A = [2.0, -0.5], ε = 0.2, mask = [[1, 1, 1],
                                                [1, 1, 0]]

    row 0 (A = 2):    ρ=1.5: min(3.0, 1.2·2=2.4) = 2.4 -> -2.4 (clipped)
                      ρ=1.1: min(2.2, 2.2)       = 2.2 -> -2.2
                      ρ=0.5: min(1.0, 0.8·2=1.6) = 1.0 -> -1.0
    row 1 (A = -0.5): ρ=1.5: min(-0.75, -0.6)    = -0.75 -> 0.75
                      ρ=1.1: min(-0.55, -0.55)   = -0.55 -> 0.55
                      ρ=0.5: min(-0.25, -0.4)    = -0.4  -> 0.4 (clipped, but masked)
"""

from __future__ import annotations

import math

import pytest
import torch

from smarttuner.grpo.loss import LOSS_TYPES, aggregate, clipped_surrogate, grpo_loss, kl_k3

LN2 = math.log(2.0)
RATIOS = torch.tensor([[1.5, 1.1, 0.5], [1.5, 1.1, 0.5]])
LOGPROBS = torch.log(RATIOS)  # old log-probs are 0, so ρ = exp(logπ)
OLD = torch.zeros(2, 3)
ADV = torch.tensor([2.0, -0.5])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
PER_TOKEN = torch.tensor([[-2.4, -2.2, -1.0], [0.75, 0.55, 0.4]])


def test_kl_k3_by_hand() -> None:
    # k3 = exp(d) - d - 1 with d = ref - logπ:
    # d = 0 -> 0;  d = ln2 -> 2 - ln2 - 1 = 0.306853;  d = -ln2 -> 0.5 + ln2 - 1 = 0.193147
    logprobs = torch.tensor([[-1.0, -1.0, -1.0]])
    ref = logprobs + torch.tensor([[0.0, LN2, -LN2]])
    expected = torch.tensor([[0.0, 1.0 - LN2, LN2 - 0.5]])
    torch.testing.assert_close(kl_k3(logprobs, ref), expected)


def test_kl_k3_is_non_negative_and_zero_only_at_equality() -> None:
    gen = torch.Generator().manual_seed(0)
    logprobs = -torch.rand(4, 7, generator=gen) * 5
    ref = -torch.rand(4, 7, generator=gen) * 5
    kl = kl_k3(logprobs, ref)
    assert (kl > 0).all()
    assert torch.equal(kl_k3(logprobs, logprobs), torch.zeros(4, 7))


def test_clipped_surrogate_by_hand() -> None:
    per_token, clipped = clipped_surrogate(LOGPROBS, OLD, ADV, epsilon=0.2)
    torch.testing.assert_close(per_token, PER_TOKEN)
    assert clipped.tolist() == [[True, False, False], [False, False, True]]


def test_ratio_one_gives_minus_advantage() -> None:
    # ρ = 1 lies inside the clip range: the loss is -A on every token, nothing clipped
    logprobs = torch.full((2, 3), -2.0)
    per_token, clipped = clipped_surrogate(logprobs, logprobs.clone(), ADV, epsilon=0.2)
    torch.testing.assert_close(per_token, -ADV.unsqueeze(1).expand(2, 3))
    assert not clipped.any()


def test_clip_higher_raises_only_the_upper_bound() -> None:
    # ρ = [1.25, 0.5], A = [1, -1]
    # ε_high = ε = 0.2:  ρ=1.25, A=1  -> min(1.25, 1.2) = 1.2 -> -1.2 clipped
    #                    ρ=0.5,  A=-1 -> min(-0.5, -0.8) = -0.8 -> 0.8 clipped
    # ε_high = 0.28:     ρ=1.25 is inside [0.8, 1.28] -> -1.25, not clipped
    #                    the lower bound is unchanged -> 0.8 clipped
    logprobs = torch.log(torch.tensor([[1.25], [0.5]]))
    old = torch.zeros(2, 1)
    adv = torch.tensor([1.0, -1.0])
    same, clipped_same = clipped_surrogate(logprobs, old, adv, 0.2)
    higher, clipped_higher = clipped_surrogate(logprobs, old, adv, 0.2, epsilon_high=0.28)
    torch.testing.assert_close(same, torch.tensor([[-1.2], [0.8]]))
    torch.testing.assert_close(higher, torch.tensor([[-1.25], [0.8]]))
    assert clipped_same.tolist() == [[True], [True]]
    assert clipped_higher.tolist() == [[False], [True]]


@pytest.mark.parametrize(
    ("loss_type", "kwargs", "expected"),
    [
        # per-sequence mean, then mean over sequences:
        # row 0: (-2.4 - 2.2 - 1.0) / 3 = -1.866667;  row 1: (0.75 + 0.55) / 2 = 0.65
        # (-1.866667 + 0.65) / 2 = -0.608333
        ("grpo", {}, (-5.6 / 3 + 0.65) / 2),
        # token mean over the minibatch: (-5.6 + 1.3) / 5 = -0.86
        ("bnpo", {}, -0.86),
        # token sum over N × max_completion_length = 2 × 4: -4.3 / 8 = -0.5375
        ("dr_grpo", {"max_completion_length": 4}, -0.5375),
        # without a max length the tensor width is used: -4.3 / (2 × 3) = -0.716667
        ("dr_grpo", {}, -4.3 / 6),
        # token sum over the caller's normaliser: -4.3 / 10 = -0.43
        ("dapo", {"token_normaliser": 10.0}, -0.43),
        # no normaliser: this minibatch's own token count, -4.3 / 5 = -0.86
        ("dapo", {}, -0.86),
    ],
)
def test_aggregate_by_hand(loss_type: str, kwargs: dict, expected: float) -> None:
    value = aggregate(PER_TOKEN, MASK, loss_type, **kwargs)
    assert value.ndim == 0
    assert value.item() == pytest.approx(expected, abs=1e-6)


def test_aggregate_ignores_masked_values_even_when_huge() -> None:
    poisoned = PER_TOKEN.clone()
    poisoned[1, 2] = 1e6
    for loss_type in LOSS_TYPES:
        assert aggregate(poisoned, MASK, loss_type).item() == pytest.approx(
            aggregate(PER_TOKEN, MASK, loss_type).item(), abs=1e-6
        )


def test_aggregate_grpo_gives_an_empty_row_zero_not_nan() -> None:
    # row 1 has no tokens: its mean is 0 (clamped count), row 0 mean = -5.6/3
    mask = torch.tensor([[1, 1, 1], [0, 0, 0]])
    assert aggregate(PER_TOKEN, mask, "grpo").item() == pytest.approx(-5.6 / 3 / 2, abs=1e-6)


def test_aggregate_unknown_loss_type_names_it() -> None:
    with pytest.raises(ValueError, match="'ppo'"):
        aggregate(PER_TOKEN, MASK, "ppo")


def test_grpo_loss_beta_zero_by_hand() -> None:
    out = grpo_loss(LOGPROBS, OLD, ADV, MASK, epsilon=0.2, beta=0.0)
    # loss = grpo aggregation of the surrogate = -0.608333 (see test_aggregate_by_hand)
    assert out.loss.item() == pytest.approx((-5.6 / 3 + 0.65) / 2, abs=1e-6)
    assert out.policy_loss.item() == pytest.approx(out.loss.item(), abs=1e-7)
    assert out.kl.item() == 0.0
    # clipped and unmasked: only [0, 0] -> 1 of 5 real tokens
    assert out.clip_fraction.item() == pytest.approx(0.2)
    assert not out.policy_loss.requires_grad


def test_grpo_loss_with_kl_by_hand() -> None:
    # d = ref - logπ = [[0, ln2, -ln2], [ln2, 0, 5]]  (the 5 is masked)
    # k3 = [[0, 1-ln2, ln2-0.5], [1-ln2, 0, e^5-6]];  note (1-ln2) + (ln2-0.5) = 0.5
    # β = 0.1, total = surrogate + 0.1·k3:
    #   row 0 sum = -5.6 + 0.1·0.5 = -5.55 -> mean -1.85
    #   row 1 sum = 1.3 + 0.1·(1-ln2) = 1.3306853 -> mean 0.66534265
    #   loss = (-1.85 + 0.66534265) / 2 = -0.59232868
    # token-mean KL over the 5 real tokens = (2(1-ln2) + ln2 - 0.5) / 5 = 0.16137056
    ref = LOGPROBS + torch.tensor([[0.0, LN2, -LN2], [LN2, 0.0, 5.0]])
    out = grpo_loss(LOGPROBS, OLD, ADV, MASK, epsilon=0.2, beta=0.1, ref_logprobs=ref)
    row1 = (1.3 + 0.1 * (1 - LN2)) / 2
    assert out.loss.item() == pytest.approx((-1.85 + row1) / 2, abs=1e-6)
    assert out.policy_loss.item() == pytest.approx((-5.6 / 3 + 0.65) / 2, abs=1e-6)
    assert out.kl.item() == pytest.approx((2 * (1 - LN2) + LN2 - 0.5) / 5, abs=1e-6)


def test_grpo_loss_epsilon_high_by_hand() -> None:
    # ε_high = 0.6: ρ = 1.5 is no longer clipped for A = 2 -> -3.0
    # row 0: (-3.0 - 2.2 - 1.0) / 3 = -2.066667;  row 1 unchanged 0.65
    # loss = (-2.066667 + 0.65) / 2 = -0.708333; the only clipped token left is masked
    out = grpo_loss(LOGPROBS, OLD, ADV, MASK, epsilon=0.2, epsilon_high=0.6)
    assert out.loss.item() == pytest.approx((-6.2 / 3 + 0.65) / 2, abs=1e-6)
    assert out.clip_fraction.item() == 0.0


def test_grpo_loss_beta_needs_reference() -> None:
    with pytest.raises(ValueError, match="ref_logprobs"):
        grpo_loss(LOGPROBS, OLD, ADV, MASK, epsilon=0.2, beta=0.04)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_one_sgd_step_follows_the_advantage(loss_type: str) -> None:
    # positive advantage: every token's log-prob goes up; negative: down (ρ = 1, no clipping)
    logprobs = torch.full((2, 3), -1.0, requires_grad=True)
    old = logprobs.detach().clone()
    adv = torch.tensor([1.0, -1.0])
    mask = torch.ones(2, 3)
    grpo_loss(logprobs, old, adv, mask, epsilon=0.2, loss_type=loss_type).loss.backward()
    with torch.no_grad():
        stepped = logprobs - 0.1 * logprobs.grad
    assert (stepped[0] > old[0]).all()
    assert (stepped[1] < old[1]).all()


def test_kl_gradient_pulls_towards_the_reference() -> None:
    # no advantage: only the KL term acts, and it moves logπ towards ref
    logprobs = torch.tensor([[-1.0, -3.0]], requires_grad=True)
    ref = torch.tensor([[-2.0, -2.0]])
    out = grpo_loss(
        logprobs,
        logprobs.detach(),
        torch.zeros(1),
        torch.ones(1, 2),
        epsilon=0.2,
        beta=1.0,
        ref_logprobs=ref,
    )
    out.loss.backward()
    assert logprobs.grad[0, 0] > 0  # above ref: descent lowers it
    assert logprobs.grad[0, 1] < 0  # below ref: descent raises it


def _loop_loss(
    logprobs: list[list[float]],
    old: list[list[float]],
    ref: list[list[float]],
    adv: list[float],
    mask: list[list[int]],
    eps: float,
    eps_high: float,
    beta: float,
    loss_type: str,
    max_len: int,
    normaliser: float,
) -> float:
    """The same loss written as plain Python loops over samples and tokens."""
    per_sample_sums, per_sample_counts = [], []
    for i in range(len(logprobs)):
        total, count = 0.0, 0
        for t in range(len(logprobs[i])):
            if not mask[i][t]:
                continue
            ratio = math.exp(logprobs[i][t] - old[i][t])
            clipped_ratio = min(max(ratio, 1 - eps), 1 + eps_high)
            surrogate = -min(ratio * adv[i], clipped_ratio * adv[i])
            d = ref[i][t] - logprobs[i][t]
            total += surrogate + beta * (math.exp(d) - d - 1)
            count += 1
        per_sample_sums.append(total)
        per_sample_counts.append(count)
    n = len(logprobs)
    if loss_type == "grpo":
        return (
            sum(s / max(c, 1) for s, c in zip(per_sample_sums, per_sample_counts, strict=True)) / n
        )
    if loss_type == "bnpo":
        return sum(per_sample_sums) / sum(per_sample_counts)
    if loss_type == "dr_grpo":
        return sum(per_sample_sums) / (n * max_len)
    return sum(per_sample_sums) / normaliser  # dapo


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_vectorised_loss_matches_a_python_loop(loss_type: str) -> None:
    gen = torch.Generator().manual_seed(7)
    n, t = 5, 6
    logprobs = -torch.rand(n, t, generator=gen) * 3
    old = logprobs + (torch.rand(n, t, generator=gen) - 0.5) * 0.8  # ratios around 1, some clip
    ref = logprobs + (torch.rand(n, t, generator=gen) - 0.5)
    adv = torch.randn(n, generator=gen)
    lengths = [6, 1, 3, 5, 2]
    mask = torch.tensor([[1] * k + [0] * (t - k) for k in lengths])
    kwargs = dict(eps=0.2, eps_high=0.28, beta=0.04, loss_type=loss_type, max_len=8)
    out = grpo_loss(
        logprobs,
        old,
        adv,
        mask,
        epsilon=0.2,
        epsilon_high=0.28,
        beta=0.04,
        ref_logprobs=ref,
        loss_type=loss_type,
        max_completion_length=8,
        token_normaliser=40.0,
    )
    expected = _loop_loss(
        logprobs.tolist(),
        old.tolist(),
        ref.tolist(),
        adv.tolist(),
        mask.tolist(),
        normaliser=40.0,
        **kwargs,
    )
    assert out.loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert 0.0 < out.clip_fraction.item() < 1.0  # the case really exercises the clip
