"""Near codes among the speaking head's previous tokens while it trains: ``NeighbourNoise``.

Teacher-forced, the Speech Refined Head is fed the reference's previous codes; free-running, its own,
and about half of its misses are FSQ neighbours of the right code (one or two of the eight ternary digits
a step off: ``tools/experiments/srh_code_distance.py``), inputs its training never showed it. With
``SpeechLLMModule(prev_code_noise=p)`` each previous code is, with probability ``p``, replaced by a random
neighbour: one random digit moved one step (0 -> 1, 2 -> 1, 1 -> 0 or 2). The targets stay the reference's.

Example:
    >>> noise = NeighbourNoise(0.2, seed=0)
    >>> noisy = noise(prev_ids)      # [B, T] speech ids; special ids (BOS, EOS, pad) are left alone
"""

from __future__ import annotations

import torch
from funaudiochat.base.constants import SPEECH_CODES

DIGITS = 8  # FSQ 3^8


def fsq_neighbour(codes: torch.Tensor, digit: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``codes`` (real speech codes) with digit ``digit`` (0..7) moved one step: up where ``up`` and the
    digit is below 2, else down where it is above 0, else up."""
    place = 3**digit
    value = (codes // place) % 3
    step = torch.where(value == 0, 1, torch.where(value == 2, -1, torch.where(up, 1, -1)))
    return codes + step * place


class NeighbourNoise:
    """Replace each real code of ``ids`` with probability ``rate`` by a random FSQ neighbour (module
    docstring); ``seed``: its own random stream (None: torch's)."""

    def __init__(self, rate: float, seed: int | None = None):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"prev_code_noise must lie in [0, 1], got {rate}")
        self.rate = rate
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        if self.rate == 0.0:
            return ids
        shape = ids.shape
        draw = torch.rand(shape, generator=self.generator).to(ids.device)
        digit = torch.randint(0, DIGITS, shape, generator=self.generator).to(ids.device)
        up = (torch.rand(shape, generator=self.generator) < 0.5).to(ids.device)
        real = (ids >= 0) & (ids < SPEECH_CODES)
        return torch.where(real & (draw < self.rate), fsq_neighbour(ids, digit, up), ids)
