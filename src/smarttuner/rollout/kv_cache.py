"""A KV cache that is written in place instead of grown by concatenation.

transformers' `DynamicLayer` appends each decode step's keys and values with `torch.cat`, so
every step copies the whole cache of every layer (read + write of all past keys and values):
at batch 48 that is more memory traffic than the attention itself. `PreallocatedLayer`
allocates room for the prompt and every new token once, writes the step's keys and values
into it, and hands attention a view of the filled part. Dropping finished rows
(`batch_select_indices`) still copies, but only at steps where a row ends.

The views are exactly the tensors `DynamicLayer` would return, so decoding is unchanged
token for token (tested).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """One layer's keys and values in a buffer of `capacity` positions ([B, H, capacity, D])."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self._keys: torch.Tensor | None = None
        self._values: torch.Tensor | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if self._keys is None:
            self._keys = self._empty(key_states, max(self.capacity, end))
            self._values = self._empty(value_states, max(self.capacity, end))
        elif end > self._keys.shape[-2]:  # more tokens than planned: grow (rare, by doubling)
            self._keys = self._grown(self._keys, 2 * end)
            self._values = self._grown(self._values, 2 * end)
        self._keys[:, :, self.length : end] = key_states
        self._values[:, :, self.length : end] = value_states
        self.length = end
        self._refresh_views()
        return self.keys, self.values

    @staticmethod
    def _empty(like: torch.Tensor, positions: int) -> torch.Tensor:
        b, h, _, d = like.shape
        return like.new_empty((b, h, positions, d))

    def _grown(self, buffer: torch.Tensor, positions: int) -> torch.Tensor:
        out = self._empty(buffer, positions)
        out[:, :, : self.length] = buffer[:, :, : self.length]
        return out

    def _refresh_views(self) -> None:
        self.keys = self._keys[:, :, : self.length]
        self.values = self._values[:, :, : self.length]

    def get_seq_length(self) -> int:
        return self.length

    def reset(self) -> None:
        self._keys = self._values = None
        self.length = 0
        super().reset()

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("PreallocatedLayer is for rollouts; it does not crop")

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.length:
            self._keys = self._keys.repeat_interleave(repeats, dim=0)
            self._values = self._values.repeat_interleave(repeats, dim=0)
            self._refresh_views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.length:
            self._keys = self._keys.index_select(0, indices)
            self._values = self._values.index_select(0, indices)
            self._refresh_views()


def concat_caches(caches: list[Cache]) -> Cache:
    """One cache of the rows of `caches` (same layers, capacity and length: prefills of row
    chunks of one left-padded batch), in order. Consumes them: each layer's parts are released
    as soon as they are joined, so the whole cache is never held twice."""
    if len(caches) == 1:
        return caches[0]
    layers = []
    for parts in zip(*(c.layers for c in caches), strict=True):
        first = parts[0]
        layer = PreallocatedLayer(first.capacity)
        layer.lazy_initialization(first.keys, first.values)
        layer._keys = torch.cat([p._keys for p in parts])
        layer._values = torch.cat([p._values for p in parts])
        layer.length = first.length
        layer._refresh_views()
        layers.append(layer)
        for p in parts:
            p.reset()
    return Cache(layers=layers)


def preallocated_cache(num_layers: int, capacity: int) -> Cache:
    """A cache of `num_layers` `PreallocatedLayer`s, each with room for `capacity` positions."""
    return Cache(layers=[PreallocatedLayer(capacity) for _ in range(num_layers)])
