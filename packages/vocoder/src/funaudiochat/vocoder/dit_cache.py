"""What a DiT keeps between the chunks of a stream: position-conv contexts and key/value buffers."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DiTCache:
    """One DiT's streaming cache: the causal position convs' input context ``[B, dim, kernel - 1]`` (x2),
    and per block a ``KVBuffer`` of the frames kept; ``position`` is the absolute index of the next frame
    (its rotary angle). The key/value buffers are updated in place."""

    conv: list[torch.Tensor]
    kv: list[KVBuffer]
    position: int = 0

    def keep_last(self, frames: int) -> DiTCache:
        """Forget all but the keys and values of the last ``frames`` frames (in place); returns self."""
        for buffer in self.kv:
            buffer.keep_last(frames)
        return self


class KVBuffer:
    """Keys and values ``[B, heads, P, dim_head]`` of a stream's past frames, in preallocated storage that
    grows by doubling and is compacted when full, so a chunk costs a copy of its own frames only."""

    def __init__(self, empty: torch.Tensor):
        self.keys = self.values = empty
        self.start = self.end = 0

    def __len__(self) -> int:
        return self.end - self.start

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``k``, ``v`` ``[B, heads, n, dim_head]``; returns views of all kept keys and values."""
        n, kept = k.shape[2], len(self)
        if self.end + n > self.keys.shape[2]:
            capacity = max(2 * (kept + n), 16)
            keys, values = (z.new_empty(*z.shape[:2], capacity, z.shape[3]) for z in (k, v))
            keys[:, :, :kept] = self.keys[:, :, self.start : self.end]
            values[:, :, :kept] = self.values[:, :, self.start : self.end]
            self.keys, self.values, self.start, self.end = keys, values, 0, kept
        self.keys[:, :, self.end : self.end + n] = k
        self.values[:, :, self.end : self.end + n] = v
        self.end += n
        return self.keys[:, :, self.start : self.end], self.values[:, :, self.start : self.end]

    def keep_last(self, frames: int) -> None:
        self.start = max(self.start, self.end - frames)
