"""What a DiT keeps between the chunks of a stream: position-conv contexts and key/value buffers.

Both are stream states (``funaudiochat.base.streaming``). The flow runs its conditional and unconditional
branches as one batch, so a cache made for B sessions has 2B rows: rows ``0..B-1`` conditional, ``B..2B-1``
unconditional; ``select`` and ``cat`` keep the two halves apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from funaudiochat.base.streaming import StateMismatch, StreamState


@dataclass
class DiTCache(StreamState):
    """One DiT's streaming cache for B sessions (2B rows): the causal position convs' input contexts
    ``[2B, dim, kernel - 1]`` (x2), per block a ``KVBuffer`` of the frames kept, and ``position``, the
    absolute index of the next frame (its rotary angle). ``DiT.step`` updates it in place."""

    conv: list[torch.Tensor]
    kv: list[KVBuffer]
    position: int = 0

    @property
    def batch_size(self) -> int:
        return self.conv[0].shape[0] // 2

    def keep_last(self, frames: int) -> DiTCache:
        """Forget all but the keys and values of the last ``frames`` frames (in place); returns self."""
        for buffer in self.kv:
            buffer.keep_last(frames)
        return self

    def _rows(self, index: list[int]) -> list[int]:
        b = self.batch_size
        return index + [b + i for i in index]

    def _select_rows(self, index: list[int]) -> DiTCache:
        rows = self._rows(index)
        picked = torch.tensor(rows, dtype=torch.long, device=self.conv[0].device)
        return DiTCache([c[picked] for c in self.conv], [kv.take(picked) for kv in self.kv], self.position)

    def _cat_states(self, states: list[DiTCache]) -> DiTCache:
        if len({s.position for s in states}) > 1 or len({len(s.kv[0]) for s in states}) > 1:
            raise StateMismatch(
                "DiT caches at different positions cannot be one lockstep batch (use Cohorts): positions "
                f"{[s.position for s in states]}"
            )
        halves = [(s, s.batch_size) for s in states]
        conv = [
            torch.cat([s.conv[i][:b] for s, b in halves] + [s.conv[i][b:] for s, b in halves])
            for i in range(len(self.conv))
        ]
        kv = [KVBuffer.join([(s.kv[i], b) for s, b in halves]) for i in range(len(self.kv))]
        return DiTCache(conv, kv, self.position)


@dataclass
class KVBuffer:
    """Keys and values ``[B, heads, P, dim_head]`` of a stream's past frames, in preallocated storage that
    grows by doubling and is compacted when full, so a chunk costs a copy of its own frames only. The live
    frames are ``start .. end`` of the storage."""

    keys: torch.Tensor
    values: torch.Tensor = field(default=None)  # type: ignore[assignment]
    start: int = 0
    end: int = 0

    def __post_init__(self):
        if self.values is None:
            self.values = self.keys

    def __len__(self) -> int:
        return self.end - self.start

    def live(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Views of the kept keys and values ``[B, heads, P, dim_head]``."""
        return self.keys[:, :, self.start : self.end], self.values[:, :, self.start : self.end]

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
        return self.live()

    def keep_last(self, frames: int) -> None:
        self.start = max(self.start, self.end - frames)

    def take(self, rows: torch.Tensor) -> KVBuffer:
        """A compact copy holding ``rows`` of the kept frames."""
        keys, values = self.live()
        return KVBuffer(keys[rows], values[rows], 0, len(self))

    @staticmethod
    def join(parts: list[tuple[KVBuffer, int]]) -> KVBuffer:
        """Buffers of equal length, each with its rows split at ``b`` into a conditional and an
        unconditional half -> one buffer with all conditional rows, then all unconditional rows."""
        lives = [(buffer.live(), b) for buffer, b in parts]
        keys = torch.cat([k[:b] for (k, _), b in lives] + [k[b:] for (k, _), b in lives])
        values = torch.cat([v[:b] for (_, v), b in lives] + [v[b:] for (_, v), b in lives])
        return KVBuffer(keys, values, 0, keys.shape[2])
