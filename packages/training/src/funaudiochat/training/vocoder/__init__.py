"""Vocoder training: the flow-matching (tokens -> mel) and HiFT GAN (mel -> wave) stages.

- ``FlowMatchingModule`` / ``HiFTModule``: the LightningModules (recipes ``vocoder_flow.yaml`` /
  ``vocoder_hift.yaml``, run with ``funaudiochat-train fit --config ...``).
- ``VocoderDataModule``: audio folders/manifests -> mel, speech tokens, F0, pseudo speaker vectors.
- ``MelSpectrogram`` (CosyVoice3's 24 kHz / 50 Hz log-mel), ``PitchTracker`` (YIN F0 targets),
  ``VocoderDiscriminator`` (multi-period + multi-resolution) and the GAN losses.
"""

from funaudiochat.vocoder.mel import MelConfig, MelSpectrogram

from .data import (
    AudioItem,
    VocoderDataModule,
    VocoderDataset,
    collate_vocoder,
    list_audio,
    pseudo_speaker_embedding,
    tokenize_items,
)
from .discriminators import (
    DiscriminatorConfig,
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    VocoderDiscriminator,
)
from .flow_module import FlowMatchingModule
from .hift_module import HiFTModule
from .losses import (
    MelReconstructionLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from .pitch import PitchConfig, PitchTracker

__all__ = [
    "AudioItem",
    "DiscriminatorConfig",
    "FlowMatchingModule",
    "HiFTModule",
    "MelConfig",
    "MelReconstructionLoss",
    "MelSpectrogram",
    "MultiPeriodDiscriminator",
    "MultiResolutionDiscriminator",
    "PitchConfig",
    "PitchTracker",
    "VocoderDataModule",
    "VocoderDataset",
    "VocoderDiscriminator",
    "collate_vocoder",
    "discriminator_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
    "list_audio",
    "pseudo_speaker_embedding",
    "tokenize_items",
]
