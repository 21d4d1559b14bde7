"""HiFi-GAN losses for HiFT: least-squares GAN, feature matching, and mel reconstruction (L1 on log-mel).

    discriminator_loss       sum_k mean((1 - D_k(y))^2) + mean(D_k(G(x))^2)
    generator_adversarial    sum_k mean((1 - D_k(G(x)))^2)
    feature_matching_loss    sum_k sum_l mean|F_kl(y) - F_kl(G(x))|       (real features are targets)
    MelReconstructionLoss    sum_s mean|logmel_s(G(x)) - logmel_s(y)|     over one or more mel settings

The sums run over sub-discriminators k (and layers l); HiFT weighs them mel 45, feature matching 2,
adversarial 1 (CosyVoice's ``HiFiGan``). Unlike Matcha's ``feature_loss``, feature matching here has no
built-in factor 2: the weight says it all.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from funaudiochat.vocoder.mel import MelConfig, MelSpectrogram
from torch import nn


def discriminator_loss(
    real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor]
) -> torch.Tensor:
    """LSGAN discriminator loss: real outputs pushed to 1, generated ones to 0, summed over discriminators."""
    if len(real_logits) != len(fake_logits) or not real_logits:
        raise ValueError("real and fake logits must be non-empty lists of the same length")
    return sum(
        torch.mean((1 - r) ** 2) + torch.mean(f**2) for r, f in zip(real_logits, fake_logits, strict=True)
    )


def generator_adversarial_loss(fake_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """LSGAN generator loss: generated outputs pushed to 1."""
    if not fake_logits:
        raise ValueError("fake logits must be a non-empty list")
    return sum(torch.mean((1 - f) ** 2) for f in fake_logits)


def feature_matching_loss(
    real_features: Sequence[Sequence[torch.Tensor]], fake_features: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """L1 between the discriminators' feature maps of real and generated audio (real ones detached)."""
    if len(real_features) != len(fake_features) or not real_features:
        raise ValueError("real and fake features must be non-empty lists of the same length")
    total = 0.0
    for reals, fakes in zip(real_features, fake_features, strict=True):
        if len(reals) != len(fakes):
            raise ValueError("each discriminator must give as many real as fake feature maps")
        for r, f in zip(reals, fakes, strict=True):
            total = total + torch.mean(torch.abs(r.detach() - f))
    return total


class MelReconstructionLoss(nn.Module):
    """Sum over mel settings of the mean L1 between log-mels of generated and real audio ``[B, L]``.

    The default is CosyVoice3's single mel (``MelConfig()``); pass several configs for a multi-scale loss."""

    def __init__(self, configs: Sequence[MelConfig] | None = None):
        super().__init__()
        configs = list(configs) if configs is not None else [MelConfig()]
        if not configs:
            raise ValueError("MelReconstructionLoss needs at least one mel config")
        self.mels = nn.ModuleList(MelSpectrogram(c) for c in configs)

    def forward(self, generated: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        if generated.shape != real.shape:
            raise ValueError(
                f"generated {list(generated.shape)} and real {list(real.shape)} audio differ in shape"
            )
        return sum(F.l1_loss(mel(generated), mel(real)) for mel in self.mels)
