"""funaudiochat.drsr: the dual-resolution core of Fun-Audio-Chat (5 Hz shared LLM, 25 Hz Speech Refined Head).

- ``FunAudioChatConfig`` / ``FunAudioChatAudioEncoderConfig``: official config names and fields.
- ``FunAudioChatForConditionalGeneration``: the model (official state-dict layout), training forward.
- ``generate`` / ``stream`` / ``prefill`` / ``decode_step``: parallel text + speech decoding on an
  explicit ``DecodingState`` (the one streaming contract: updated in place; rows batch with ``select`` /
  ``cat`` / ``reset``); ``DecodingConfig`` / ``SamplingConfig`` its settings; ``PromptPrefix``: a
  prompt's first tokens (the system turn) computed once and reused by ``prefill``.
- ``ops``: fused group / ungroup / sample kernels with pure-PyTorch references.

Importing the package registers the model with transformers' Auto classes.
"""

from .configuration import FunAudioChatAudioEncoderConfig, FunAudioChatConfig
from .generation import (
    DecodingConfig,
    DecodingState,
    FunAudioChatGenerationMixin,
    GenerateOutput,
    SamplingConfig,
    StepOutput,
    decode_step,
    generate,
    prefill,
    stream,
)
from .modeling import FunAudioChatForConditionalGeneration, FunAudioChatOutput
from .prompt_cache import PromptPrefix
from .register import register

register()

__all__ = [
    "DecodingState",
    "FunAudioChatAudioEncoderConfig",
    "FunAudioChatConfig",
    "FunAudioChatForConditionalGeneration",
    "FunAudioChatOutput",
    "GenerateOutput",
    "PromptPrefix",
    "DecodingConfig",
    "FunAudioChatGenerationMixin",
    "SamplingConfig",
    "StepOutput",
    "decode_step",
    "generate",
    "prefill",
    "register",
    "stream",
]
