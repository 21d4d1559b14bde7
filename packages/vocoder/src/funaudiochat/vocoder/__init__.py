"""funaudiochat.vocoder: speech tokens -> 24 kHz audio (CosyVoice3-compatible flow matching and HiFT)."""

from .hift import HiFTConfig, HiFTGenerator, SourceNoise
from .speakers import Speaker, SpeakerTable

__all__ = ["HiFTConfig", "HiFTGenerator", "SourceNoise", "Speaker", "SpeakerTable"]
