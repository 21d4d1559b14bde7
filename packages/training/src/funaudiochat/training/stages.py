"""The training stages the ``funaudiochat-train`` command knows: a recipe's ``stage:`` names one of them,
which fixes the LightningModule its ``model:`` section builds and the LightningDataModule of ``data:``.

Classes are named as ``"package.module:Class"`` and imported only when a recipe uses them."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

# The submodules of the speech LLM stages' module worth ``torch.compile`` (a recipe's ``compile: true``): the
# shared LLM's decoder, the SRH's decoder and the audio tower's layers (steps 1.25-1.35x faster on two CPU
# cores, ``tools/bench/compiled_training.py``).
SPEECH_LLM_COMPILE = (
    "model.language_model.model",
    "model.audio_invert_tower.crq_transformer",
    "model.continuous_audio_tower.layers",
)


@dataclass(frozen=True)
class Stage:
    """A training stage: its LightningModule and LightningDataModule (``"package.module:Class"``), a line
    saying what it trains, and the submodules a recipe's ``compile: true`` compiles (none: the stage's
    steps are not faster compiled, e.g. the convolutional vocoders)."""

    module: str
    data: str
    description: str
    compile_targets: tuple[str, ...] = ()

    @staticmethod
    def _import(target: str) -> type:
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)

    def classes(self) -> tuple[type, type]:
        """``(LightningModule class, LightningDataModule class)``."""
        return self._import(self.module), self._import(self.data)


STAGES: dict[str, Stage] = {
    "text_lm": Stage(
        "funaudiochat.training.llm.text_lm:TextLMModule",
        "funaudiochat.training.llm.text_lm:TextChatDataModule",
        "the text LLM (Qwen3) from scratch on question -> answer chats: the stand-in for a pretrained Qwen3",
        ("model",),
    ),
    "tokenizer": Stage(
        "funaudiochat.training.tokenizer.module:TokenizerTrainingModule",
        "funaudiochat.training.tokenizer.data:TokenizerDataModule",
        "speech tokenizer, 16 kHz audio -> 25 Hz FSQ codes (6561) trained with CTC on transcripts",
    ),
    "audio_encoder": Stage(
        "funaudiochat.training.llm.audio_encoder:AudioEncoderModule",
        "funaudiochat.training.tokenizer.data:TokenizerDataModule",
        "the continuous audio tower alone, trained with CTC on transcripts: the stand-in for Whisper",
    ),
    "pre_alignment": Stage(
        "funaudiochat.training.llm.module:SpeechLLMModule",
        "funaudiochat.training.llm.data:SpokenChatDataModule",
        "pre-alignment: the LLM frozen; speech encoders, grouping adapter and SRH learn (text + speech CE)",
        SPEECH_LLM_COMPILE,
    ),
    "sft": Stage(
        "funaudiochat.training.llm.module:SpeechLLMModule",
        "funaudiochat.training.llm.data:SpokenChatDataModule",
        "supervised fine-tuning of the whole model (or LoRA on the LLM) on spoken conversations",
        SPEECH_LLM_COMPILE,
    ),
    "core_cocktail": Stage(
        "funaudiochat.training.llm.core_cocktail:CoreCocktailModule",
        "funaudiochat.training.llm.data:SpokenChatDataModule",
        "Core-Cocktail: stage 1 at a high LR, merge the LLM with the original (alpha), stage 2 at a low LR",
        SPEECH_LLM_COMPILE,
    ),
    "dpo": Stage(
        "funaudiochat.training.llm.dpo:MultiTaskDPOModule",
        "funaudiochat.training.llm.preference:PreferenceDataModule",
        "multi-task DPO on preference pairs of joint text + speech answers, against a frozen reference",
        SPEECH_LLM_COMPILE,
    ),
    "vocoder_flow": Stage(
        "funaudiochat.training.vocoder.flow_module:FlowMatchingModule",
        "funaudiochat.training.vocoder.data:VocoderDataModule",
        "flow matching, 25 Hz speech tokens -> 50 Hz mel (CosyVoice3 causal DiT)",
    ),
    "vocoder_hift": Stage(
        "funaudiochat.training.vocoder.hift_module:HiFTModule",
        "funaudiochat.training.vocoder.data:VocoderDataModule",
        "HiFT GAN, mel -> 24 kHz waveform (multi-period + multi-resolution discriminators)",
    ),
}
