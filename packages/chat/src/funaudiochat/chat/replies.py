"""What a pipeline gives back: a ``Reply`` (offline) and the stream's events (``TextDelta``, ``AudioChunk``,
then ``Done`` with the whole reply), with their ``Timings``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from funaudiochat.base.constants import VOCODER_SAMPLE_RATE
from funaudiochat.drsr.prompts import ToolCall


@dataclass
class Timings:
    """Seconds from the request's start: to the first text, to the first audio, to the end; ``audio_s`` is
    the reply's audio length; ``rtf`` the real-time factor (total time / audio length)."""

    first_text_s: float | None = None
    first_audio_s: float | None = None
    total_s: float = 0.0
    audio_s: float = 0.0

    @property
    def rtf(self) -> float | None:
        return self.total_s / self.audio_s if self.audio_s else None


@dataclass
class Reply:
    """A reply: its ``text`` (special tokens dropped), ``tool_calls`` parsed from it, the generated
    ``text_ids``, the 25 Hz ``speech_codes`` (0..6560; empty in text modes), the ``audio`` (float32, 24 kHz;
    None in text modes) and the ``timings``."""

    text: str
    tool_calls: list[ToolCall]
    text_ids: list[int]
    speech_codes: torch.Tensor
    audio: torch.Tensor | None
    timings: Timings = field(default_factory=Timings)
    sample_rate: int = VOCODER_SAMPLE_RATE


@dataclass
class TextDelta:
    """New reply text (streaming)."""

    text: str


@dataclass
class AudioChunk:
    """New reply audio, float32 ``[samples]`` at 24 kHz (streaming)."""

    samples: torch.Tensor


@dataclass
class Done:
    """The end of a streamed reply, with the whole reply."""

    reply: Reply


Event = TextDelta | AudioChunk | Done
