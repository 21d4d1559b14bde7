"""funaudiochat.vocoder: speech tokens -> 24 kHz audio (CosyVoice3-compatible flow matching and HiFT)."""

from .flow import CausalFlowMatching, CFMDecoder, FlowConfig
from .hift import HiFTConfig, HiFTGenerator, SourceNoise
from .speakers import Speaker, SpeakerTable

__all__ = [
    "CFMDecoder",
    "CausalFlowMatching",
    "FlowConfig",
    "HiFTConfig",
    "HiFTGenerator",
    "SourceNoise",
    "Speaker",
    "SpeakerTable",
]
