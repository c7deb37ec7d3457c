"""`grpo.blame`: a negative advantage applies from the first false step's token on."""

from __future__ import annotations

import pytest
import torch

from smarttuner.grpo.buffer import Experience, collate
from smarttuner.grpo.credit import blame_stats, credit_start, credit_starts, token_at
from smarttuner.grpo.experience import CollectSettings, collect_experience
from smarttuner.grpo.loss import grpo_loss
from smarttuner.rewards import build_reward
from smarttuner.rewards.combine import NamedReward
from smarttuner.rollout.types import SamplingParams, finalize, left_pad
from smarttuner.tasks.arithmetic import ArithmeticTask
from smarttuner.tasks.base import Example

SLIP = "<think>17 * 9 = 90 + 63 = 143; 170 + 143 = 313</think><answer>313</answer>"
RIGHT = "<think>17 * 9 = 90 + 63 = 153; 170 + 153 = 323</think><answer>323</answer>"


def test_token_at_finds_the_token_that_writes_a_character(tiny_tokenizer) -> None:
    ids = tiny_tokenizer.encode(SLIP)
    for offset in (0, 1, SLIP.index("143"), len(SLIP) - 1):
        k = token_at(ids, tiny_tokenizer, offset)
        before = tiny_tokenizer.decode(ids[:k], skip_special_tokens=True)
        through = tiny_tokenizer.decode(ids[: k + 1], skip_special_tokens=True)
        assert len(before) <= offset < len(through)


def test_a_wrong_sample_is_blamed_from_its_first_false_step(tiny_tokenizer) -> None:
    ids = tiny_tokenizer.encode(SLIP)
    start = credit_start(SLIP, ids, -0.7, tiny_tokenizer)
    assert start > 0
    # the true steps go free; the slip's token (which may carry the space before it) and all
    # after it are blamed
    assert tiny_tokenizer.decode(ids[:start]).endswith("90 + 63 =")
    assert tiny_tokenizer.decode(ids[start:]).lstrip().startswith("143; 170")


def test_positive_advantages_and_unlocated_errors_keep_the_whole_sequence(tiny_tokenizer) -> None:
    slip_ids, right_ids = tiny_tokenizer.encode(SLIP), tiny_tokenizer.encode(RIGHT)
    assert credit_start(SLIP, slip_ids, 0.4, tiny_tokenizer) == 0  # reinforced as written
    assert credit_start(RIGHT, right_ids, -0.4, tiny_tokenizer) == 0  # no false step to blame
    texts, adv = [SLIP, RIGHT], [-0.7, 0.7]
    lengths = [len(slip_ids), len(right_ids)]
    ids = torch.zeros(2, max(lengths), dtype=torch.long)
    ids[0, : lengths[0]], ids[1, : lengths[1]] = torch.tensor(slip_ids), torch.tensor(right_ids)
    assert credit_starts("sequence", texts, ids, lengths, adv, tiny_tokenizer) == [0, 0]
    assert credit_starts("first_false_equation", texts, ids, lengths, adv, tiny_tokenizer)[1] == 0
    with pytest.raises(ValueError, match="unknown blame 'nope'"):
        credit_starts("nope", texts, ids, lengths, adv, tiny_tokenizer)


def test_collate_zeroes_the_advantage_before_credit_from() -> None:
    items = [
        Experience(torch.tensor([1]), torch.tensor([5, 6, 7, 8]), None, None, -0.5, 0, 0, 2),
        Experience(torch.tensor([1]), torch.tensor([5, 6]), None, None, 0.25, 0, 0, 0),
    ]
    assert collate(items, 0).advantages.tolist() == [[0, 0, -0.5, -0.5], [0.25] * 4]


def test_uncredited_tokens_get_no_policy_gradient() -> None:
    logprobs = torch.full((1, 4), -1.0, requires_grad=True)
    advantages = torch.tensor([[0.0, 0.0, -0.5, -0.5]])
    out = grpo_loss(
        logprobs, logprobs.detach(), advantages, torch.ones(1, 4), epsilon=0.2, loss_type="grpo"
    )
    out.loss.backward()
    assert logprobs.grad[0, :2].tolist() == [0.0, 0.0]
    assert logprobs.grad[0, 2:].tolist() == pytest.approx([0.125, 0.125])  # -A / 4 tokens
    same = grpo_loss(
        logprobs, logprobs.detach(), torch.tensor([-0.5]), torch.ones(1, 4), epsilon=0.2
    )
    assert same.loss.item() == pytest.approx(0.5)  # per-sequence advantages unchanged


def test_blame_stats_cover_the_negative_samples_only() -> None:
    stats = blame_stats([0, 30, 0, 10], [100, 100, 50, 50], [0.5, -0.5, -0.5, -0.5])
    assert stats["blame/located_fraction"] == pytest.approx(2 / 3)
    assert stats["blame/token_share"] == pytest.approx((70 + 50 + 40) / 200)
    assert blame_stats([0], [10], [1.0]) == {
        "blame/located_fraction": 0.0,
        "blame/token_share": 1.0,
    }


def test_collect_experience_stores_where_blame_starts(tiny_model, tiny_tokenizer) -> None:
    """The wiring: completions with a slip and without, through rewards and advantages, into
    experiences whose `credit_from` marks the slip's token."""
    task = ArithmeticTask()
    texts = [SLIP, RIGHT]
    prompt = tiny_tokenizer.encode("(17 * 9) + 170 =")

    def engine(model, tokenizer, prompt_ids, g, sampling, generator):
        ids, mask = left_pad([prompt_ids[0]] * g, tokenizer.pad_token_id)
        width = max(len(tokenizer.encode(t)) for t in texts)
        raw = torch.full((g, width + 1), tokenizer.eos_token_id)
        for row, text in enumerate(texts):
            encoded = tokenizer.encode(text)
            raw[row, : len(encoded)] = torch.tensor(encoded)
        return finalize(ids, mask, raw, tokenizer, {tokenizer.eos_token_id}, ())

    def collect(blame: str):
        return collect_experience(
            tiny_model,
            None,
            tiny_tokenizer,
            engine,
            task,
            [NamedReward("correctness", 1.0, build_reward("correctness", task, {}))],
            [Example("(17 * 9) + 170", "323")],
            [prompt],
            ["(17 * 9) + 170 ="],
            SamplingParams(64, 1.0),
            CollectSettings(2, "group", 1e-4, 0.0, False, 4, blame=blame),
            iteration=1,
            generator=torch.Generator().manual_seed(0),
        )

    blamed = collect("first_false_equation")
    slip, right = blamed.experiences
    assert slip.advantage < 0 < right.advantage
    assert right.credit_from == 0 and slip.credit_from > 0
    assert tiny_tokenizer.decode(slip.completion_ids[slip.credit_from :]).lstrip().startswith("143")
    assert [s["credit_from"] for s in blamed.samples] == [slip.credit_from, 0]
    assert blamed.stats["blame/located_fraction"] == 1.0
    assert 0 < blamed.stats["blame/token_share"] < 1
    assert [e.credit_from for e in collect("sequence").experiences] == [0, 0]
