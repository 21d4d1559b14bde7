"""Chunk-causal attention: which frames a frame of the flow may attend to when audio is made in chunks."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ChunkPolicy:
    """Chunk-causal attention: chunks counted from frame ``start`` (earlier frames join the first chunk);
    each chunk sees itself and ``context`` chunks before it (None: all). The first chunk has ``size``
    frames, each next one ``growth`` times its predecessor's, at most ``max_size`` (None: no bound), so a
    stream can start with a short chunk (early audio) and go on with longer, cheaper ones."""

    size: int
    start: int = 0
    context: int | None = None
    growth: int = 1
    max_size: int | None = None

    def __post_init__(self):
        if self.size < 1 or self.growth < 1:
            raise ValueError(f"chunk size and growth must be >= 1, got {self.size} and {self.growth}")
        if self.max_size is not None and self.max_size < self.size:
            raise ValueError(f"max chunk size {self.max_size} is below the first chunk's {self.size}")

    def next_size(self, size: int) -> int:
        """The size of the chunk after one of ``size`` frames."""
        grown = size * self.growth
        return grown if self.max_size is None else min(grown, self.max_size)

    def chunk_ids(self, frames: int, device=None) -> torch.Tensor:
        """The chunk index of each of ``frames`` frames ``[frames]``."""
        pos = (torch.arange(frames, device=device) - self.start).clamp(min=0)
        if self.growth == 1 or self.max_size == self.size:
            return torch.div(pos, self.size, rounding_mode="floor")
        ends, size, total = [], self.size, 0
        while total < frames:
            total += size
            ends.append(total)
            size = self.next_size(size)
        return torch.bucketize(pos, torch.tensor(ends, device=device), right=True)


def attention_mask(mask: torch.Tensor, chunks: ChunkPolicy | None = None) -> torch.Tensor:
    """Frame mask ``[B, 1, T]`` (True = valid) -> attention mask ``[B, 1, T, T]``.

    ``chunks``: chunk-causal attention; frame i sees the frames of its own chunk and of the
    ``chunks.context`` chunks before it (None: all of them). Chunks are counted from frame ``chunks.start``;
    the frames before it belong to the first chunk (a voice prompt runs with the first chunk of speech).
    A query row with no visible key is opened fully (its output is padding), as CosyVoice does."""
    b, _, t = mask.shape
    allowed = mask.expand(b, t, t)
    if chunks is not None:
        chunk = chunks.chunk_ids(t, mask.device)
        ahead = chunk.unsqueeze(0) - chunk.unsqueeze(1)  # [query, key]: key chunk - query chunk
        visible = ahead <= 0
        if chunks.context is not None:
            visible = visible & (ahead >= -chunks.context)
        allowed = allowed & visible
    allowed = allowed | ~allowed.any(dim=-1, keepdim=True)
    return allowed.unsqueeze(1)
