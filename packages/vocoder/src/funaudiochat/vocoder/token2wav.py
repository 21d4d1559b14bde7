"""Token2Wav: 25 Hz speech tokens -> 24 kHz waveform (flow matching to mel, then HiFT).

Offline synthesis of any length: tokens are cut into segments of at most ``segment_tokens`` (30 s by
default, as the official code does); each segment is synthesised with ``overlap_tokens`` of the previous
segment's tokens in front of it, and the overlapping audio is cross-faded with a raised-cosine window, so
there is no seam. A last segment shorter than ``min_last_tokens`` is merged with the one before and the
pair split in half (the official rule, which keeps every segment long enough to sound natural).

Token ids: 0..6560 are speech codes; the special ids 6561..6564 (BOS / EOS / pad / unused) that a model's
raw output may contain are dropped with a warning; anything else is a ``ValueError``. No tokens give an
empty waveform.

Example:
    >>> t2w = Token2Wav(flow, hift, speakers=SpeakerTable.load("speakers.safetensors"))
    >>> wave = t2w.synthesize(codes, speaker="中文女")       # float32 [samples] at 24 kHz
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch

from .flow import CausalFlowMatching, FlowConfig
from .hift import HiFTConfig, HiFTGenerator, SourceNoise
from .speakers import EMBEDDING_DIM, Speaker, SpeakerTable

SPEECH_CODES = 6561
SPECIAL_IDS = range(6561, 6565)
SAMPLE_RATE = 24000


def clean_tokens(tokens: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """1-D long tensor of speech codes: specials 6561..6564 dropped (with a warning), others refused."""
    ids = torch.as_tensor(tokens).reshape(-1)
    if ids.numel() == 0:
        return ids.long()
    if ids.is_floating_point():
        raise ValueError(f"speech tokens must be integers, got dtype {ids.dtype}")
    ids = ids.long()
    special = (ids >= SPECIAL_IDS.start) & (ids < SPECIAL_IDS.stop)
    bad = ((ids < 0) | (ids >= SPECIAL_IDS.stop)) & ~special
    if bad.any():
        values = sorted(set(ids[bad].tolist()))[:10]
        raise ValueError(
            f"speech tokens must lie in 0..{SPEECH_CODES - 1} (specials "
            f"{SPECIAL_IDS.start}..{SPECIAL_IDS.stop - 1} are dropped); got {values}"
        )
    if special.any():
        warnings.warn(
            f"dropped {int(special.sum())} special speech ids ({SPECIAL_IDS.start}.."
            f"{SPECIAL_IDS.stop - 1}: BOS/EOS/pad) before vocoding",
            stacklevel=3,
        )
        ids = ids[~special]
    return ids


def plan_segments(num_tokens: int, segment_tokens: int, min_last_tokens: int) -> list[tuple[int, int]]:
    """Cut ``[0, num_tokens)`` into segments of at most ``segment_tokens``; a short last segment is merged
    with the previous one and the pair split in half."""
    if num_tokens <= segment_tokens:
        return [(0, num_tokens)] if num_tokens else []
    bounds = list(range(0, num_tokens, segment_tokens)) + [num_tokens]
    segments = list(zip(bounds[:-1], bounds[1:], strict=True))
    if segments[-1][1] - segments[-1][0] < min_last_tokens:
        start = segments[-2][0]
        middle = (start + num_tokens) // 2
        segments[-2:] = [(start, middle), (middle, num_tokens)]
    return segments


class Token2Wav:
    """Flow + HiFT with a speaker table. ``synthesize`` is offline; see the module docstring."""

    def __init__(
        self,
        flow: CausalFlowMatching,
        hift: HiFTGenerator,
        speakers: SpeakerTable | None = None,
        segment_tokens: int = 750,
        overlap_tokens: int = 25,
        min_last_tokens: int = 50,
        noise_seed: int = 0,
    ):
        if not 0 <= overlap_tokens < segment_tokens:
            raise ValueError(
                f"overlap_tokens must lie in [0, segment_tokens={segment_tokens}), got {overlap_tokens}"
            )
        self.flow = flow.eval()
        self.hift = hift.eval()
        self.speakers = speakers or SpeakerTable()
        self.segment_tokens = segment_tokens
        self.overlap_tokens = overlap_tokens
        self.min_last_tokens = min_last_tokens
        self.noise_seed = noise_seed
        self.samples_per_token = flow.config.token_mel_ratio * hift.config.samples_per_frame

    @classmethod
    def random(cls, seed: int = 0) -> Token2Wav:
        """A seeded tiny random vocoder (tests, and the CLI without weights): audio of the right length
        and shape, no meaning."""
        state = torch.random.get_rng_state()
        try:
            torch.manual_seed(seed)
            flow, hift = CausalFlowMatching(FlowConfig.tiny()), HiFTGenerator(HiFTConfig.tiny())
            voice = Speaker(torch.randn(EMBEDDING_DIM))
        finally:
            torch.random.set_rng_state(state)
        return cls(flow, hift, SpeakerTable({"default": voice}))

    def _speaker(self, speaker: str | Speaker | torch.Tensor | None) -> Speaker:
        if speaker is None:
            if not len(self.speakers):
                return Speaker(torch.zeros(EMBEDDING_DIM))
            return self.speakers[self.speakers.names[0]]
        if isinstance(speaker, str):
            return self.speakers[speaker]
        if isinstance(speaker, torch.Tensor):
            speaker = Speaker(speaker.reshape(-1).float())
        speaker.validate("<given>")
        return speaker

    @torch.inference_mode()
    def synthesize(
        self, tokens: Sequence[int] | torch.Tensor, speaker: str | Speaker | torch.Tensor | None = None
    ) -> torch.Tensor:
        """Speech tokens -> waveform ``[len * 960]`` float32 at 24 kHz (see the module docstring)."""
        ids = clean_tokens(tokens)
        voice = self._speaker(speaker)
        segments = plan_segments(ids.numel(), self.segment_tokens, self.min_last_tokens)
        if not segments:
            return torch.zeros(0)
        device = self.flow.input_embedding.weight.device
        prompt_token = prompt_feat = None
        if voice.prompt_tokens is not None:
            prompt_token = voice.prompt_tokens[None].to(device)
            prompt_feat = voice.prompt_mel[None].to(device)
        embedding = voice.embedding[None].to(device)
        noise = SourceNoise(self.hift.config.nb_harmonics + 1, seed=self.noise_seed)
        out = torch.zeros(ids.numel() * self.samples_per_token)
        for start, end in segments:
            lead = min(self.overlap_tokens, start)
            chunk = ids[start - lead : end][None].to(device)
            mel, _ = self.flow.inference(chunk, embedding, prompt_token=prompt_token, prompt_feat=prompt_feat)
            wave, _ = self.hift.inference(mel, noise=noise)
            wave = wave[0].float().cpu()
            first = (start - lead) * self.samples_per_token
            fade = lead * self.samples_per_token
            if fade:
                ramp = 0.5 - 0.5 * torch.cos(torch.linspace(0, math.pi, fade))
                wave[:fade] = wave[:fade] * ramp + out[first : first + fade] * (1 - ramp)
            out[first : first + wave.numel()] = wave
        return out
