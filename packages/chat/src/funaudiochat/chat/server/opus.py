"""Ogg/Opus in and out of a session (``sphn`` 0.2.x), 24 kHz mono float32."""

from __future__ import annotations

import numpy as np
import sphn
import torch

OPUS_RATE = 24000
FRAME = 960  # samples per Opus frame sent: 40 ms at 24 kHz, as the official server sends


class OpusIn:
    """Ogg/Opus pages from a client -> PCM samples, as they come."""

    def __init__(self):
        self._reader = sphn.OpusStreamReader(OPUS_RATE)

    def push(self, pages: bytes) -> np.ndarray:
        """The samples ``pages`` complete (float32 ``[n]``, often empty); ``ValueError`` when the decoder
        rejects them."""
        try:
            pcm = self._reader.append_bytes(pages)
        except Exception as err:  # sphn raises its own error types
            raise ValueError(f"the Opus data could not be decoded: {err}") from None
        return np.asarray(pcm, dtype=np.float32).reshape(-1)


class OpusOut:
    """PCM samples -> Ogg/Opus pages in 40 ms frames; ``flush`` pads and sends the last frame."""

    def __init__(self):
        self._writer = sphn.OpusStreamWriter(OPUS_RATE)
        self._pending = np.zeros(0, dtype=np.float32)

    def push(self, samples: torch.Tensor | np.ndarray) -> bytes:
        """Pages for the whole frames of the samples so far (b"" when none is complete)."""
        data = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else samples
        self._pending = np.concatenate([self._pending, np.asarray(data, dtype=np.float32).reshape(-1)])
        pages = []
        while self._pending.shape[0] >= FRAME:
            frame, self._pending = self._pending[:FRAME], self._pending[FRAME:]
            pages.append(self._writer.append_pcm(np.ascontiguousarray(frame)) or b"")
        return b"".join(pages)

    def flush(self) -> bytes:
        """Pages for the last samples (zero-padded to a whole frame)."""
        if not self._pending.shape[0]:
            return b""
        frame = np.zeros(FRAME, dtype=np.float32)
        frame[: self._pending.shape[0]] = self._pending
        self._pending = np.zeros(0, dtype=np.float32)
        return self._writer.append_pcm(frame) or b""
