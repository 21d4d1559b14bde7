"""A transformers key/value cache as a stream state: rows selected, joined and reset like any other state.

The cache of a causal decoder (the shared LLM, the SRH) holds per layer keys and values ``[B, heads, L,
head_dim]``. Sessions of different lengths share a batch by left padding: ``cat`` pads every shorter cache
on the left with zeros up to the longest, and the owner's attention mask (ragged on the left as well) marks
those positions as absent, so each row attends to exactly its own past. The row count is kept beside the
cache because an empty cache (no layer filled yet) has no tensors to count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from funaudiochat.base.streaming import StateMismatch, StreamState
from transformers import DynamicCache


@dataclass
class KVCache(StreamState):
    """``cache``: the transformers cache, updated in place by the decoder; ``rows``: its batch size;
    ``config``: the decoder config (to make new caches)."""

    cache: DynamicCache
    rows: int
    config: object

    @classmethod
    def empty(cls, config, rows: int) -> KVCache:
        """A cache for ``rows`` sessions with nothing in it."""
        return cls(DynamicCache(config=config), rows, config)

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
        cache = DynamicCache(config=self.config)
        for index, (keys, values) in enumerate(layers):
            cache.update(keys, values, index)
        return KVCache(cache, rows, self.config)

    def _replace_contents(self, other: StreamState) -> None:
        self.cache, self.rows, self.config = other.cache, other.rows, other.config

    def _select_rows(self, index: list[int]) -> KVCache:
        layers = self._layers()
        if not layers:
            return KVCache.empty(self.config, len(index))
        picked = torch.tensor(index, dtype=torch.long, device=layers[0][0].device)
        return self._from_layers([(k[picked], v[picked]) for k, v in layers], len(index))

    def _cat_states(self, states: list[KVCache]) -> KVCache:
        rows = sum(s.rows for s in states)
        filled = [s._layers() for s in states]
        template = next((layers for layers in filled if layers), None)
        if template is None:
            return KVCache.empty(self.config, rows)
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
