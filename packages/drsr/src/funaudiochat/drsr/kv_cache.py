"""A transformers key/value cache as a stream state: rows selected, joined and reset like any other state.

The cache of a causal decoder (the shared LLM, the SRH) holds per layer keys and values ``[B, heads, L,
head_dim]``. Sessions of different lengths share a batch by left padding: ``cat`` pads every shorter cache
on the left with zeros up to the longest, and the owner's attention mask (ragged on the left as well) marks
those positions as absent, so each row attends to exactly its own past. The row count is kept beside the
cache because an empty cache (no layer filled yet) has no tensors to count.

Appending one position per call is the decoding loop's common case (the LLM once per 5 Hz step, the SRH
five times). transformers' ``DynamicLayer`` concatenates the whole cache at every call, so each layer's
append costs a copy of everything cached; ``GrowingLayer`` writes into spare room instead and reallocates
only when the room runs out (doubling it), which makes an append cost the new position alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from funaudiochat.base.streaming import StateMismatch, StreamState
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

MIN_ROOM = 64  # positions a layer's buffers hold at least once they exist


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys and values ``[B, heads, L, head_dim]`` are views into buffers with
    spare positions: ``update`` copies only the new positions. Everything transformers reads (``keys``,
    ``values``, the sequence length) is what ``DynamicLayer`` would hold; earlier views stay valid (later
    positions are written past their end). Keys and values replaced from outside (``DynamicLayer``'s crop
    and row operations) are taken over at the next update."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._rooms: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length = self.get_seq_length()
        end = length + key_states.shape[-2]
        key_room, value_room = self.reserve(end, key_states, value_states)
        key_room[..., length:end, :].copy_(key_states)
        value_room[..., length:end, :].copy_(value_states)
        return self.commit(end)

    def reserve(self, end: int, key_states=None, value_states=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The key and value buffers ``[B, heads, room, head_dim]``, with ``room >= end``, holding the cached
        positions (new buffers when the old ones are too small or the cache was replaced from outside).
        ``key_states`` / ``value_states``: the states about to be written (batch, heads, dtype); default:
        the cached ones."""
        key_states = self.keys if key_states is None else key_states
        value_states = self.values if value_states is None else value_states
        rooms = self._rooms
        if (
            rooms is None
            or end > rooms[0].shape[-2]
            or self.keys.data_ptr() != rooms[0].data_ptr()  # replaced from outside
            or rooms[0].shape[:2] != key_states.shape[:2]
            or rooms[0].dtype != key_states.dtype
        ):
            rooms = self._rooms = self._grow(key_states, value_states, end)
        return rooms

    def commit(self, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Make the first ``end`` positions of the buffers the cache (after writing into ``reserve``'s
        buffers); returns the keys and values."""
        self.keys, self.values = self._rooms[0][..., :end, :], self._rooms[1][..., :end, :]
        return self.keys, self.values

    def _grow(self, key_states: torch.Tensor, value_states: torch.Tensor, end: int):
        """New buffers with room for at least ``end`` positions (twice the old room, at least
        ``MIN_ROOM``), holding what is cached."""
        old = 0 if self._rooms is None else self._rooms[0].shape[-2]
        room = max(end, 2 * old, MIN_ROOM)
        rooms = []
        for cached, new in ((self.keys, key_states), (self.values, value_states)):
            buffer = new.new_empty(*new.shape[:2], room, new.shape[-1])
            if cached.numel():
                buffer[..., : cached.shape[-2], :].copy_(cached)
            rooms.append(buffer)
        return tuple(rooms)

    def reset(self) -> None:
        # Dropped, not zeroed: transformers before 5.2x zeroes the states and keeps their length.
        self.keys = self.values = None
        self.is_initialized = False
        super().reset()
        self._rooms = None


def growing_cache(config) -> DynamicCache:
    """A ``DynamicCache`` for ``config`` whose full-attention layers are ``GrowingLayer`` s."""
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


@dataclass
class KVCache(StreamState):
    """``cache``: the transformers cache, updated in place by the decoder; ``rows``: its batch size;
    ``config``: the decoder config (to make new caches)."""

    cache: DynamicCache
    rows: int
    config: object

    @classmethod
    def empty(cls, config, rows: int, growing: bool = True) -> KVCache:
        """A cache for ``rows`` sessions with nothing in it; ``growing``: its layers are ``GrowingLayer`` s
        (else transformers' own ``DynamicLayer`` s, the reference)."""
        return cls(growing_cache(config) if growing else DynamicCache(config=config), rows, config)

    @property
    def growing(self) -> bool:
        """Whether the layers are ``GrowingLayer`` s (new caches made from this one are of the same kind)."""
        return any(isinstance(layer, GrowingLayer) for layer in self.cache.layers)

    @property
    def batch_size(self) -> int:
        return self.rows

    @property
    def length(self) -> int:
        """Cached positions (the same for every row; padding included)."""
        return self.cache.get_seq_length()

    def _layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self.length == 0:
            return []
        return [(layer.keys, layer.values) for layer in self.cache.layers]

    def _from_layers(self, layers: list[tuple[torch.Tensor, torch.Tensor]], rows: int) -> KVCache:
        cache = growing_cache(self.config) if self.growing else DynamicCache(config=self.config)
        for index, (keys, values) in enumerate(layers):
            cache.update(keys, values, index)
        return KVCache(cache, rows, self.config)

    def _replace_contents(self, other: StreamState) -> None:
        self.cache, self.rows, self.config = other.cache, other.rows, other.config

    def _select_rows(self, index: list[int]) -> KVCache:
        layers = self._layers()
        if not layers:
            return KVCache.empty(self.config, len(index), self.growing)
        picked = torch.tensor(index, dtype=torch.long, device=layers[0][0].device)
        return self._from_layers([(k[picked], v[picked]) for k, v in layers], len(index))

    def _cat_states(self, states: list[KVCache]) -> KVCache:
        rows = sum(s.rows for s in states)
        filled = [s._layers() for s in states]
        template = next((layers for layers in filled if layers), None)
        if template is None:
            return KVCache.empty(self.config, rows, self.growing)
        if len({len(layers) for layers in filled if layers}) > 1:
            raise StateMismatch("key/value caches with different numbers of layers cannot be one batch")
        longest = max(s.length for s in states)
        joined = []
        for index, (keys, values) in enumerate(template):
            parts_k, parts_v = [], []
            for state, layers in zip(states, filled, strict=True):
                if layers:
                    k, v = layers[index]
                else:
                    k = keys.new_zeros(state.rows, *keys.shape[1:2], 0, keys.shape[3])
                    v = values.new_zeros(state.rows, *values.shape[1:2], 0, values.shape[3])
                parts_k.append(_left_pad(k, longest))
                parts_v.append(_left_pad(v, longest))
            joined.append((torch.cat(parts_k), torch.cat(parts_v)))
        return self._from_layers(joined, rows)


def _left_pad(t: torch.Tensor, length: int) -> torch.Tensor:
    """``[b, heads, L, d]`` -> ``[b, heads, length, d]`` with zeros in front."""
    missing = length - t.shape[2]
    if missing == 0:
        return t
    return torch.cat((t.new_zeros(t.shape[0], t.shape[1], missing, t.shape[3]), t), dim=2)
