"""HiFT GAN training (mel -> 24 kHz waveform) as a LightningModule, HiFi-GAN style, as CosyVoice3 trains it.

Per batch (``VocoderDataModule(task="hift")``: ``speech [B, L]``, ``speech_feat [B, T, 80]``,
``pitch_feat [B, T]``, with L = 480 T), manual optimization with two Adam optimizers:

    generate   f0 = F0 predictor(mel); source = NSF(f0, fresh random noise); wave = decode(mel, source)
    D step     LSGAN: D(real) -> 1, D(wave.detach()) -> 0       (multi-period + multi-resolution, ``d_*``)
    G step     45 * mel L1  +  2 * feature matching  +  1 * LSGAN adversarial  +  1 * F0 L1

F0: as in CosyVoice, the harmonic source does not pass gradients back into the F0 predictor (its sine
generator runs under ``no_grad`` there); the predictor learns from the F0 L1 loss alone, against the YIN
targets of ``pitch.py`` (CosyVoice uses pyworld's harvest; none is available here): ``hift.source(...,
detach_f0=True)``. With ``f0_weight=0`` the F0 predictor is not trained at all.

Logged: ``train/loss_g``, ``train/loss_d``, ``train/loss_mel``, ``train/loss_fm``, ``train/loss_adv``,
``train/loss_f0`` (and ``val/loss_mel``). Gradients are clipped to ``grad_clip`` (norm) per optimizer. Note
that Lightning counts both optimizers' steps in ``global_step``, so ``trainer.max_steps`` is twice the
number of batches. At the end of ``fit`` the generator's state dict is written to ``export_path``
(safetensors, atomically) with its ``HiFTConfig`` in the metadata, so that
``funaudiochat.vocoder.loading.load_hift(path)`` and ``funaudiochat vocode --hift`` build the right size.

Example (recipe ``packages/training/recipes/vocoder_hift.yaml``):
    >>> module = HiFTModule(hift={"preset": "tiny"}, discriminator={"preset": "tiny"})
"""

from __future__ import annotations

import json
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from funaudiochat.vocoder import HiFTConfig, HiFTGenerator, SourceNoise
from funaudiochat.vocoder.loading import HIFT_WEIGHTS_FORMAT
from funaudiochat.vocoder.mel import MelConfig

from ..config import build_config, config_to_dict
from ..weights import save_safetensors_atomic
from .discriminators import DiscriminatorConfig, VocoderDiscriminator
from .losses import (
    MelReconstructionLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)

WEIGHTS_FORMAT = HIFT_WEIGHTS_FORMAT  # what funaudiochat.vocoder.loading.load_hift accepts


class HiFTModule(L.LightningModule):
    """Trains ``HiFTGenerator`` against ``VocoderDiscriminator`` (see the module docstring).

    Args:
        hift: ``HiFTConfig`` overrides, e.g. ``{"preset": "tiny"}`` (default: the official size).
        discriminator: ``DiscriminatorConfig`` overrides (``{"preset": "tiny"}`` for tests).
        mel: ``MelConfig`` overrides of the input mel (must match the data's); also the loss mel.
        mel_scales: a list of ``MelConfig`` overrides for a multi-scale mel loss; default ``[mel]``.
        lr, d_lr, betas, weight_decay: Adam(W) settings of the generator and the discriminator
            (``d_lr`` defaults to ``lr``; CosyVoice3 uses 2e-4 for both).
        mel_weight, fm_weight, adv_weight, f0_weight: loss weights (45, 2, 1, 1).
        grad_clip: max gradient norm per optimizer step (0 disables).
        init_weights: a ``hift`` state dict (safetensors) to start the generator from, or ``None``.
        export_path: where ``fit`` writes the generator's final weights (``.safetensors``), or ``None``.
    """

    def __init__(
        self,
        hift: dict[str, Any] | None = None,
        discriminator: dict[str, Any] | None = None,
        mel: dict[str, Any] | None = None,
        mel_scales: list[dict[str, Any]] | None = None,
        lr: float = 2e-4,
        d_lr: float | None = None,
        betas: tuple[float, float] | list[float] = (0.8, 0.99),
        weight_decay: float = 0.0,
        mel_weight: float = 45.0,
        fm_weight: float = 2.0,
        adv_weight: float = 1.0,
        f0_weight: float = 1.0,
        grad_clip: float = 5.0,
        init_weights: str | None = None,
        export_path: str | None = None,
    ):
        super().__init__()
        if lr <= 0 or (d_lr is not None and d_lr <= 0) or weight_decay < 0:
            raise ValueError(
                f"lr and d_lr must be > 0 and weight_decay >= 0, got {lr}, {d_lr}, {weight_decay}"
            )
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
        weights = {
            "mel_weight": mel_weight,
            "fm_weight": fm_weight,
            "adv_weight": adv_weight,
            "f0_weight": f0_weight,
        }
        if any(w < 0 for w in weights.values()) or grad_clip < 0:
            raise ValueError(f"loss weights and grad_clip must be >= 0, got {weights}, grad_clip={grad_clip}")
        if export_path is not None and not str(export_path).endswith(".safetensors"):
            raise ValueError(f"export_path must end in .safetensors, got {export_path!r}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.config: HiFTConfig = build_config(HiFTConfig, hift)
        self.mel_config: MelConfig = build_config(MelConfig, mel)
        if (self.mel_config.sample_rate, self.mel_config.hop_length, self.mel_config.n_mels) != (
            self.config.sampling_rate,
            self.config.samples_per_frame,
            self.config.in_channels,
        ):
            raise ValueError(
                f"the mel ({self.mel_config.sample_rate} Hz, hop {self.mel_config.hop_length}, "
                f"{self.mel_config.n_mels} bins) does not fit HiFT ({self.config.sampling_rate} Hz, "
                f"{self.config.samples_per_frame} samples per frame, {self.config.in_channels} bins)"
            )
        if init_weights is not None:
            from safetensors.torch import load_file

            self.hift = HiFTGenerator.from_state_dict(load_file(init_weights), self.config, init_weights)
        else:
            self.hift = HiFTGenerator(self.config)
        self.discriminator = VocoderDiscriminator(build_config(DiscriminatorConfig, discriminator))
        scales = [self.mel_config] if mel_scales is None else [build_config(MelConfig, s) for s in mel_scales]
        self.mel_loss = MelReconstructionLoss(scales)

    def generate(self, mel: torch.Tensor, noise_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mel ``[B, 80, T]`` -> ``(wave [B, 480 T], f0 [B, T])``, differentiable; f0 reaches the source
        detached (see the module docstring)."""
        noise = SourceNoise(self.config.nb_harmonics + 1, seed=noise_seed)
        f0, source = self.hift.source(mel, noise, detach_f0=True)
        return self.hift.decode(mel, source), f0

    def _inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        mel = batch["speech_feat"].transpose(1, 2)
        real = batch["speech"]
        if real.shape[1] != mel.shape[2] * self.config.samples_per_frame:
            raise ValueError(
                f"speech has {real.shape[1]} samples for {mel.shape[2]} mel frames; expected "
                f"{self.config.samples_per_frame} per frame"
            )
        return mel, real

    def _step(self, optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad()
        self.manual_backward(loss)
        if self.hparams.grad_clip > 0:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm"
            )
        optimizer.step()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        h = self.hparams
        opt_g, opt_d = self.optimizers()
        mel, real = self._inputs(batch)
        fake, f0 = self.generate(mel, int(torch.randint(0, 2**31 - 1, ())))

        self.toggle_optimizer(opt_d)
        real_logits, _ = self.discriminator(real)
        fake_logits, _ = self.discriminator(fake.detach())
        loss_d = discriminator_loss(real_logits, fake_logits)
        self._step(opt_d, loss_d)
        self.untoggle_optimizer(opt_d)

        self.toggle_optimizer(opt_g)
        loss_mel = self.mel_loss(fake, real)
        with torch.no_grad():
            _, real_features = self.discriminator(real)
        fake_logits, fake_features = self.discriminator(fake)
        loss_adv = generator_adversarial_loss(fake_logits)
        loss_fm = feature_matching_loss(real_features, fake_features)
        loss_f0 = F.l1_loss(f0, batch["pitch_feat"].to(f0.dtype))
        loss_g = (
            h.mel_weight * loss_mel + h.fm_weight * loss_fm + h.adv_weight * loss_adv + h.f0_weight * loss_f0
        )
        self._step(opt_g, loss_g)
        self.untoggle_optimizer(opt_g)

        logs = {"loss_g": loss_g, "loss_d": loss_d, "loss_mel": loss_mel, "loss_fm": loss_fm}
        logs.update({"loss_adv": loss_adv, "loss_f0": loss_f0})
        self.log_dict({f"train/{k}": v.detach() for k, v in logs.items()}, batch_size=real.shape[0])
        self.log("train/mel", loss_mel.detach(), prog_bar=True, logger=False, batch_size=real.shape[0])

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        mel, real = self._inputs(batch)
        fake, _ = self.generate(mel, noise_seed=batch_idx)
        loss = self.mel_loss(fake, real)
        self.log("val/loss_mel", loss, prog_bar=True, batch_size=real.shape[0])
        return loss

    def configure_optimizers(self):
        h = self.hparams
        opt_g = torch.optim.AdamW(
            self.hift.parameters(), lr=h.lr, betas=tuple(h.betas), weight_decay=h.weight_decay
        )
        opt_d = torch.optim.AdamW(
            self.discriminator.parameters(),
            lr=h.d_lr or h.lr,
            betas=tuple(h.betas),
            weight_decay=h.weight_decay,
        )
        return [opt_g, opt_d]

    def export(self, path: str) -> None:
        """Write the generator's state dict (the CosyVoice3 ``hift`` layout) to ``path`` (safetensors)."""
        metadata = {"format": WEIGHTS_FORMAT, "config": json.dumps(config_to_dict(self.config))}
        save_safetensors_atomic(self.hift.state_dict(), path, metadata)

    def on_train_end(self) -> None:
        if self.hparams.export_path is not None and self.trainer.is_global_zero:
            self.export(self.hparams.export_path)
