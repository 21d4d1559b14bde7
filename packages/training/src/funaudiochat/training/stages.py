"""The training stages the ``funaudiochat-train`` command knows: a recipe's ``stage:`` names one of them,
which fixes the LightningModule its ``model:`` section builds and the LightningDataModule of ``data:``.

Classes are named as ``"package.module:Class"`` and imported only when a recipe uses them."""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    module: str
    data: str
    description: str

    @staticmethod
    def _import(target: str) -> type:
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)

    def classes(self) -> tuple[type, type]:
        """``(LightningModule class, LightningDataModule class)``."""
        return self._import(self.module), self._import(self.data)


STAGES: dict[str, Stage] = {
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
