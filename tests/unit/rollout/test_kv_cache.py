"""The preallocated cache layer returns exactly what transformers' concatenating layer does,
through prefill, decode steps, repeated groups, dropped rows and growth past its capacity."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

from smarttuner.rollout.kv_cache import PreallocatedLayer, preallocated_cache


def _kv(batch: int, steps: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (batch, 3, steps, 8)  # [B, H, T, D]
    return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)


def _assert_same(a: DynamicLayer, b: DynamicLayer, out_a, out_b) -> None:
    for x, y in zip(out_a, out_b, strict=True):
        assert torch.equal(x, y)
    assert a.get_seq_length() == b.get_seq_length()
    assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)


def test_matches_the_dynamic_layer_through_a_rollout() -> None:
    gen = torch.Generator().manual_seed(0)
    ref, fast = DynamicLayer(), PreallocatedLayer(capacity=9)  # 5 prompt + 4 planned tokens
    k, v = _kv(2, 5, gen)  # prefill: 2 distinct prompts
    _assert_same(ref, fast, ref.update(k, v), fast.update(k, v))
    ref.batch_repeat_interleave(3)
    fast.batch_repeat_interleave(3)  # 6 rows
    for step in range(7):  # runs 3 tokens past the capacity: the buffer grows
        if step == 2:
            keep = torch.tensor([0, 2, 5])
            ref.batch_select_indices(keep)
            fast.batch_select_indices(keep)
        k, v = _kv(ref.keys.shape[0], 1, gen)
        _assert_same(ref, fast, ref.update(k, v), fast.update(k, v))
    assert fast.get_seq_length() == 12


def test_writes_in_place_while_within_capacity() -> None:
    gen = torch.Generator().manual_seed(1)
    layer = PreallocatedLayer(capacity=8)
    layer.update(*_kv(2, 4, gen))
    buffer = layer.keys.untyped_storage().data_ptr()
    layer.update(*_kv(2, 1, gen))
    assert layer.keys.untyped_storage().data_ptr() == buffer  # no new allocation, no copy
    assert layer.keys.shape == (2, 3, 5, 8)


def test_reset_and_cache_of_layers() -> None:
    cache = preallocated_cache(num_layers=2, capacity=4)
    gen = torch.Generator().manual_seed(2)
    for i in range(2):
        cache.update(*_kv(1, 3, gen), layer_idx=i)
    assert cache.get_seq_length() == 3
    cache.layers[0].reset()
    assert cache.layers[0].get_seq_length() == 0


def test_concat_caches_joins_rows_in_order() -> None:
    from smarttuner.rollout.kv_cache import concat_caches

    gen = torch.Generator().manual_seed(0)
    parts = []
    for rows in (2, 3):
        cache = preallocated_cache(2, capacity=10)
        for layer in range(2):
            k, v = (torch.randn(rows, 3, 4, 5, generator=gen) for _ in range(2))
            cache.update(k, v, layer)
        parts.append(cache)
    assert concat_caches(parts[:1]) is parts[0]
    want = [torch.cat([p.layers[layer].keys for p in parts]) for layer in range(2)]
    joined = concat_caches(parts)
    for layer in range(2):
        assert torch.equal(joined.layers[layer].keys, want[layer])
        assert joined.layers[layer].get_seq_length() == 4
        assert all(p.layers[layer]._keys is None for p in parts)  # consumed: not held twice
    step = torch.randn(5, 3, 1, 5, generator=gen)  # decoding goes on in the joined buffer
    k, _ = joined.update(step, step, 0)
    assert k.shape == (5, 3, 5, 5) and torch.equal(k[:, :, -1:], step)
