"""The experience buffer: eviction order, padding in `collate`, minibatch sampling."""

from __future__ import annotations

import pytest
import torch

from smarttuner.grpo.buffer import Experience, ExperienceBuffer, collate

PAD = 0


def exp(
    tag: int,
    prompt_len: int = 2,
    completion_len: int = 2,
    iteration: int = 0,
    with_ref: bool = True,
) -> Experience:
    """An experience whose tokens all equal `tag` (so padding is easy to see)."""
    return Experience(
        prompt_ids=torch.full((prompt_len,), tag, dtype=torch.long),
        completion_ids=torch.full((completion_len,), tag, dtype=torch.long),
        old_logprobs=torch.full((completion_len,), -float(tag)),
        ref_logprobs=torch.full((completion_len,), -2.0 * tag) if with_ref else None,
        advantage=float(tag) / 10,
        iteration=iteration,
    )


def test_capacity_evicts_the_oldest_first() -> None:
    buffer = ExperienceBuffer(capacity=5)
    buffer.add([exp(1, iteration=1), exp(2, iteration=1), exp(3, iteration=1)])
    assert len(buffer) == 3
    buffer.add([exp(t, iteration=2) for t in (4, 5, 6, 7)])
    assert len(buffer) == 5
    assert [int(e.prompt_ids[0]) for e in buffer.items] == [3, 4, 5, 6, 7]
    buffer.add([exp(t, iteration=3) for t in range(10, 17)])  # more than the capacity at once
    assert [int(e.prompt_ids[0]) for e in buffer.items] == [12, 13, 14, 15, 16]


def test_collate_pads_prompts_left_and_completions_right() -> None:
    mb = collate(
        [exp(3, prompt_len=2, completion_len=3), exp(5, prompt_len=4, completion_len=1)], PAD
    )
    assert mb.prompt_ids.tolist() == [[0, 0, 3, 3], [5, 5, 5, 5]]
    assert mb.prompt_mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
    assert mb.completion_ids.tolist() == [[3, 3, 3], [5, 0, 0]]
    assert mb.completion_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert mb.old_logprobs.tolist() == [[-3.0, -3.0, -3.0], [-5.0, 0.0, 0.0]]
    assert mb.ref_logprobs.tolist() == [[-6.0, -6.0, -6.0], [-10.0, 0.0, 0.0]]
    assert mb.advantages.tolist() == [pytest.approx([0.3] * 3), pytest.approx([0.5] * 3)]
    assert mb.prompt_ids.dtype == torch.long and mb.completion_mask.dtype == torch.long
    assert mb.old_logprobs.dtype == torch.float32


def test_collate_without_reference_logprobs() -> None:
    mb = collate([exp(1, with_ref=False), exp(2, with_ref=False)], PAD)
    assert mb.ref_logprobs is None
    mixed = collate([exp(1, with_ref=True), exp(2, with_ref=False)], PAD)
    assert mixed.ref_logprobs is None


def test_collate_uses_the_given_pad_id() -> None:
    mb = collate([exp(3, 1, 1), exp(5, 2, 2)], pad_id=99)
    assert mb.prompt_ids.tolist() == [[99, 3], [5, 5]]
    assert mb.completion_ids.tolist() == [[3, 99], [5, 5]]


def _tags(batches: list[list[Experience]]) -> list[list[int]]:
    return [[int(e.prompt_ids[0]) for e in b] for b in batches]


def test_minibatches_cover_the_buffer_without_replacement() -> None:
    buffer = ExperienceBuffer(capacity=12)
    buffer.add([exp(t) for t in range(1, 13)])
    batches = _tags(buffer.minibatches(3, 4, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [4, 4, 4]
    assert sorted(t for b in batches for t in b) == list(range(1, 13))


def test_minibatches_wrap_around_a_small_buffer() -> None:
    buffer = ExperienceBuffer(capacity=10)
    buffer.add([exp(t) for t in range(1, 4)])
    batches = _tags(buffer.minibatches(2, 2, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [2, 2]
    # the first three draws are a permutation, the fourth wraps to the first again
    flat = batches[0] + batches[1]
    assert sorted(flat[:3]) == [1, 2, 3]
    assert flat[3] == flat[0]
    # more batches than the buffer holds: each pass over the permutation repeats it
    many = _tags(buffer.minibatches(3, 3, torch.Generator().manual_seed(0)))
    assert many[0] == many[1] == many[2]
    assert sorted(many[0]) == [1, 2, 3]


def test_minibatches_are_deterministic_with_a_seeded_generator() -> None:
    buffer = ExperienceBuffer(capacity=20)
    buffer.add([exp(t) for t in range(20)])
    first = _tags(buffer.minibatches(4, 5, torch.Generator().manual_seed(42)))
    again = _tags(buffer.minibatches(4, 5, torch.Generator().manual_seed(42)))
    other = _tags(buffer.minibatches(4, 5, torch.Generator().manual_seed(43)))
    assert first == again
    assert first != other
    assert first != [
        list(range(0, 5)),
        list(range(5, 10)),
        list(range(10, 15)),
        list(range(15, 20)),
    ]


def test_collate_without_old_logprobs_means_on_policy() -> None:
    on_policy = [
        Experience(torch.tensor([1, 2]), torch.tensor([3]), None, None, 0.5, 0),
        Experience(torch.tensor([4]), torch.tensor([5, 6]), None, None, -0.5, 0),
    ]
    mb = collate(on_policy, PAD)
    assert mb.old_logprobs is None
    assert mb.completion_mask.tolist() == [[1, 0], [1, 1]]
