"""Training augmentation on a log-mel ``[n_mels, T]``: speaker-like frequency warping and SpecAugment masks.

A recogniser trained on a handful of voices hears those voices; one that must hear new ones (the demo's
held-out espeak-ng voices, accents and variants) needs to see more speakers than it has. Two cheap
stand-ins, both on the features the model reads:

- **frequency warping** (vocal-tract-length perturbation, Jaitly & Hinton 2013): the spectrum is stretched
  or squeezed along the mel axis by a factor drawn uniformly in ``warp`` (``mel'[f] = mel[f / a]``, linear
  interpolation between bins, the top bin repeated past the edge): a longer or shorter vocal tract;
- **SpecAugment masks** (Park et al. 2019): ``freq_masks`` bands of up to ``freq_width`` mel bins and
  ``time_masks`` spans of up to ``time_width`` frames (10 ms each) are set to the utterance's mean, so
  that no single band or instant carries a word alone.

Draws use torch's global generator (seeded by the recipe's ``seed``, per worker by Lightning).

Example:
    >>> augment = MelAugment(warp=(0.9, 1.1), freq_masks=2, freq_width=15, time_masks=2, time_width=20)
    >>> augment(torch.zeros(128, 300)).shape
    torch.Size([128, 300])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
import torchaudio.functional as AF


def warp_frequency(mel: torch.Tensor, factor: float) -> torch.Tensor:
    """``mel [n_mels, T]`` with its frequency axis stretched by ``factor`` (> 1: formants move up)."""
    if factor <= 0:
        raise ValueError(f"the warp factor must be > 0, got {factor}")
    bins = mel.shape[0]
    source = (torch.arange(bins, dtype=torch.float32, device=mel.device) / factor).clamp(max=bins - 1)
    low = source.floor().long()
    high = (low + 1).clamp(max=bins - 1)
    weight = (source - low).to(mel.dtype)[:, None]
    return mel[low] * (1 - weight) + mel[high] * weight


@dataclass(frozen=True)
class MelAugment:
    """Frequency warping then SpecAugment masks (module docstring); every part off by default.

    Args:
        warp: ``(low, high)`` range of the warp factor, both > 0, or ``None`` for no warping.
        freq_masks: how many frequency bands to mask (0: none).
        freq_width: the widest band, in mel bins.
        time_masks: how many time spans to mask (0: none).
        time_width: the longest span, in frames (100 per second).
    ``__call__(mel [n_mels, T]) -> [n_mels, T]``."""

    warp: tuple[float, float] | None = None
    freq_masks: int = 0
    freq_width: int = 0
    time_masks: int = 0
    time_width: int = 0

    def __post_init__(self):
        if self.warp is not None:
            if len(self.warp) != 2 or not 0 < self.warp[0] <= self.warp[1]:
                raise ValueError(f"warp must be [low, high] with 0 < low <= high, got {list(self.warp)}")
            object.__setattr__(self, "warp", (float(self.warp[0]), float(self.warp[1])))
        for name in ("freq_masks", "freq_width", "time_masks", "time_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if (self.freq_masks > 0) != (self.freq_width > 0) or (self.time_masks > 0) != (self.time_width > 0):
            raise ValueError(
                "give masks and their width together (freq_masks with freq_width, time_masks with "
                f"time_width), got {self}"
            )

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any] | None) -> MelAugment | None:
        """A ``MelAugment`` from a recipe mapping (its field names), or ``None`` for ``None``; an unknown
        key is an error naming the allowed ones."""
        if settings is None:
            return None
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(settings) - set(allowed))
        if unknown:
            raise ValueError(f"unknown mel_augment keys {unknown}; allowed: {allowed}")
        values = dict(settings)
        if values.get("warp") is not None:
            values["warp"] = tuple(values["warp"])
        return cls(**values)

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        if self.warp is not None:
            low, high = self.warp
            mel = warp_frequency(mel, low + (high - low) * float(torch.rand(())))
        fill = float(mel.mean()) if mel.numel() else 0.0
        for _ in range(self.freq_masks):
            mel = AF.mask_along_axis(mel[None], self.freq_width + 1, fill, axis=1)[0]
        for _ in range(self.time_masks):
            mel = AF.mask_along_axis(mel[None], self.time_width + 1, fill, axis=2)[0]
        return mel
