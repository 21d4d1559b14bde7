"""Registration with transformers' Auto classes, so ``AutoConfig`` / ``AutoModel`` /
``AutoModelForSeq2SeqLM.from_pretrained`` work on an official Fun-Audio-Chat folder. Runs on import of
``funaudiochat.drsr``; calling ``register()`` again is harmless."""

from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

from .configuration import FunAudioChatAudioEncoderConfig, FunAudioChatConfig
from .modeling import FunAudioChatForConditionalGeneration


def register() -> None:
    for model_type, config_class in (
        (FunAudioChatConfig.model_type, FunAudioChatConfig),
        (FunAudioChatAudioEncoderConfig.model_type, FunAudioChatAudioEncoderConfig),
    ):
        try:
            AutoConfig.register(model_type, config_class)
        except ValueError:  # already registered
            pass
    for auto in (AutoModel, AutoModelForSeq2SeqLM):
        try:
            auto.register(FunAudioChatConfig, FunAudioChatForConditionalGeneration)
        except ValueError:
            pass
