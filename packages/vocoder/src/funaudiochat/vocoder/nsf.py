"""The neural source filter of HiFT: the harmonic excitation of f0 (``m_source``) and its reproducible
random parts (``SourceNoise``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .hift import HiFTConfig


class SourceNoise:
    """The random parts of the harmonic source, reproducible per sample position.

    ``phases()`` ``[H]``: initial phase offsets (cycles in [0, 1)) of the H harmonics, the fundamental's 0.
    ``noise(start, length)`` ``[length, H]``: uniform [0, 1) noise at samples ``start .. start+length``,
    drawn in fixed blocks from ``seed`` so that any range is the same whichever way it is asked for.
    Fixed tensors (``phases``, ``noise``) can be given instead, e.g. to reproduce a reference run.
    """

    BLOCK = 24000
    KEPT_BLOCKS = 16  # the drawn blocks kept for the next request (~14 MB at 9 harmonics)

    def __init__(
        self,
        harmonics: int,
        seed: int = 0,
        phases: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ):
        self.harmonics = harmonics
        self.seed = seed
        if phases is None:
            phases = torch.rand(harmonics, generator=torch.Generator().manual_seed(seed))
            phases[0] = 0.0
        self._phases = phases.reshape(harmonics).float()
        self._noise = None if noise is None else noise.reshape(-1, harmonics).float()
        self._blocks: dict[int, torch.Tensor] = {}

    def phases(self) -> torch.Tensor:
        return self._phases

    def _block(self, index: int) -> torch.Tensor:
        if index not in self._blocks:
            if len(self._blocks) >= self.KEPT_BLOCKS:
                del self._blocks[next(iter(self._blocks))]  # the oldest drawn
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + index + 1)
            self._blocks[index] = torch.rand(self.BLOCK, self.harmonics, generator=g)
        return self._blocks[index]

    def noise(self, start: int, length: int) -> torch.Tensor:
        if self._noise is not None:
            if start + length > self._noise.shape[0]:
                raise ValueError(
                    f"fixed source noise covers {self._noise.shape[0]} samples, asked for {start + length}"
                )
            return self._noise[start : start + length]
        first, last = (
            start // self.BLOCK,
            (start + length - 1) // self.BLOCK if length else start // self.BLOCK,
        )
        joined = torch.cat([self._block(i) for i in range(first, last + 1)])
        offset = start - first * self.BLOCK
        return joined[offset : offset + length]


class HarmonicSource(nn.Module):
    """Neural source filter: frame-rate f0 ``[B, T]`` -> excitation ``[B, T * frame, 1]`` at the output rate.

    Harmonics 1..H of f0, phase accumulated at frame rate, amplitude ``alpha`` where voiced (f0 >
    threshold), plus noise of amplitude ``sigma`` (voiced) or ``alpha / 3`` (unvoiced), merged by
    ``tanh(l_linear(.))``. The reference computes this per output sample from f0 repeated over each frame,
    down-samples the phase increments linearly to frames, sums them, and up-samples the phase by nearest
    neighbour: every sample of a frame gets its frame's sines. Here the sines are made once per frame,
    and only the noise (and the merge, which is linear before the tanh) runs per sample: the same values,
    summed in another order, for a fraction of the work.
    """

    def __init__(self, config: HiFTConfig):
        super().__init__()
        self.harmonics = config.nb_harmonics + 1
        self.sampling_rate = config.sampling_rate
        self.frame = config.samples_per_frame
        self.alpha = config.nsf_alpha
        self.sigma = config.nsf_sigma
        self.threshold = config.nsf_voiced_threshold
        self.l_linear = nn.Linear(self.harmonics, 1)

    def forward(
        self,
        f0: torch.Tensor,
        noise: SourceNoise,
        start: int | Sequence[int] = 0,
        phase: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """f0 ``[B, T]`` (Hz per frame) -> ``(excitation [B, T * frame, 1], phase [B, H])``.

        ``start`` is the sample position of ``f0[:, 0]``'s first sample (the noise position; the initial
        phases are added at sample 0 only, as the reference does), or one position per row (streams at
        different positions stepped together; each > 0); ``phase`` the accumulated per-frame
        phase before ``start`` (streaming; ``None`` at the start). The returned phase carries on to the
        next call. The phase is accumulated in f0's dtype: a float64 f0 keeps a long stream's phase exact
        whichever way it is cut."""
        b, frames = f0.shape
        if frames == 0:
            carried = f0.new_zeros(b, self.harmonics) if phase is None else phase
            return self.l_linear.weight.new_zeros(b, 0, 1), carried
        multiples = torch.arange(1, self.harmonics + 1, device=f0.device, dtype=f0.dtype)
        per_frame = (f0[:, :, None] * multiples / self.sampling_rate) % 1  # [B, T, H] cycles per sample
        if not isinstance(start, int) and min(start) <= 0:
            raise ValueError("per-row source positions are for streams past their start (each > 0)")
        if isinstance(start, int) and start == 0:
            # the reference adds the initial phases to sample 0; its linear down-sampling reads sample 0
            # for frame 0 only when a frame is 1 or 2 samples long, weighted by 1 - (frame - 1) / 2
            reach = 0.5 * self.frame - 0.5
            if reach < 1:
                per_frame[:, 0] = per_frame[:, 0] + (1 - reach) * noise.phases().to(per_frame)
        if phase is not None:
            per_frame = torch.cat((phase.to(per_frame)[:, None], per_frame), dim=1)
        total = torch.cumsum(per_frame, dim=1)[:, 0 if phase is None else 1 :]
        end_phase = total[:, -1]
        sines = torch.sin(total * 2 * math.pi * self.frame) * self.alpha  # [B, T, H]
        voiced = (f0 > self.threshold).to(sines.dtype)[:, :, None]
        amplitude = voiced * self.sigma + (1 - voiced) * self.alpha / 3  # [B, T, 1]
        weight = self.l_linear.weight
        harmonic = F.linear((sines * voiced).to(weight.dtype), weight)  # [B, T, 1]
        length = frames * self.frame
        if isinstance(start, int):
            noise_drive = F.linear(noise.noise(start, length).to(weight.dtype), weight)[None]  # [1, L, 1]
        else:
            noise_drive = torch.stack(
                [F.linear(noise.noise(s, length).to(weight.dtype), weight) for s in start]
            )
        merged = torch.addcmul(
            harmonic.repeat_interleave(self.frame, dim=1) + self.l_linear.bias,
            amplitude.to(weight.dtype).repeat_interleave(self.frame, dim=1),
            noise_drive,
        )
        return torch.tanh(merged), end_phase
