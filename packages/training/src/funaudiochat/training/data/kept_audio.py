"""``KeptAudio``: a data set's decoded waveforms, each read once and kept in memory when asked.

Decoding and resampling a file again on every step cost a fifth of a demo tower step
(``docs/demo_model.md``); small data sets keep the decoded waves instead. The waves are shared, so
callers must not change them in place.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class KeptAudio:
    """Item index -> decoded wave, read by ``read`` and kept when ``keep`` is on.

    read: decodes item ``index`` (e.g. ``load_audio`` at the data set's rate).
    keep: keep every decoded wave (memory grows with the data set); off: read on every call.

    Example:
        >>> audio = KeptAudio(lambda i: torch.zeros(4), keep=True)
        >>> audio(0) is audio(0)
        True
    """

    def __init__(self, read: Callable[[int], torch.Tensor], keep: bool):
        self.read = read
        self.keep = keep
        self._waves: dict[int, torch.Tensor] = {}

    def __call__(self, index: int) -> torch.Tensor:
        wave = self._waves.get(index)
        if wave is None:
            wave = self.read(index)
            if self.keep:
                self._waves[index] = wave
        return wave

    def __len__(self) -> int:
        """How many waves are kept."""
        return len(self._waves)
