"""The speech encoder's own pretraining: the Whisper stand-in.

Fun-Audio-Chat starts its ``continuous_audio_tower`` from Whisper-large-v3, an encoder already trained to
recognise speech; pre-alignment then only has to map what it hears into the LLM. A model trained from
scratch (the demo model) has no such encoder, so this stage makes one the same way Whisper's was made:
the tower learns to transcribe, with CTC over transcript units on its 25 Hz output:

    log-mel [128, T] (100 Hz) -> ContinuousAudioEncoder (the model's own tower: convs, layers, avg-pool,
      ln_post, proj to the LLM width) -> [L, output_dim] at 25 Hz -> Linear(output_dim -> units + blank)
      -> CTC loss (``tokenizer.ctc_loss.ctc_batch_loss``)

The data are those of the tokenizer stage (``TokenizerDataModule``: audio with transcripts, characters or
phonemes). At the end of ``fit`` the tower is written to ``export_path`` (safetensors, the tower's own
state-dict keys, its config in the metadata, atomically); ``llm.module.build_model`` takes it as
``audio_encoder_from`` (pre-alignment starts from it). The CTC head stays in Lightning's checkpoint.

Example (recipe ``packages/training/recipes/audio_encoder.yaml``):
    >>> module = AudioEncoderModule(encoder={"d_model": 128, "encoder_layers": 3, "output_dim": 256})
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
from funaudiochat.tokenizer.audio_encoder import AudioEncoderConfig, ContinuousAudioEncoder
from torch import nn

from ..config import build_config
from ..optim import adamw_with_schedule, check_optimizer_args
from ..tokenizer.ctc_loss import SHORT_POLICIES, CTCVocabulary, ctc_batch_loss
from ..tokenizer.ctc_targets import Vocabulary
from ..weights import save_safetensors_atomic

WEIGHTS_FORMAT = "funaudiochat-audio-encoder"


class AudioEncoderModule(CTCVocabulary, L.LightningModule):
    """Trains a ``ContinuousAudioEncoder`` with CTC on transcripts (see the module docstring).

    Args:
        encoder: ``AudioEncoderConfig`` fields (``d_model``, ``encoder_layers``, ``encoder_attention_heads``,
            ``encoder_ffn_dim``, ``output_dim`` = the LLM's width, ...); the model's ``audio_config`` sizes.
        vocabulary: the CTC symbols (blank excluded); ``None`` takes the data module's in ``setup``.
        lr, betas, weight_decay, schedule, warmup_steps, min_lr_ratio, total_steps: AdamW and its schedule.
        short_policy: ``"error"`` or ``"skip"`` for utterances too short for their transcript.
        export_path: where ``fit`` writes the tower (``.safetensors``), or ``None`` for nowhere.
    """

    def __init__(
        self,
        encoder: dict[str, Any] | None = None,
        vocabulary: list[str] | None = None,
        lr: float = 1e-3,
        betas: tuple[float, float] | list[float] = (0.9, 0.98),
        weight_decay: float = 0.01,
        schedule: str = "cosine",
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.0,
        total_steps: int | None = None,
        short_policy: str = "skip",
        export_path: str | None = None,
    ):
        super().__init__()
        check_optimizer_args(lr, weight_decay, betas, schedule)
        if short_policy not in SHORT_POLICIES:
            raise ValueError(f"short_policy must be one of {list(SHORT_POLICIES)}, got {short_policy!r}")
        if export_path is not None and not str(export_path).endswith(".safetensors"):
            raise ValueError(f"export_path must end in .safetensors, got {export_path!r}")
        self.save_hyperparameters()
        self.config = build_config(AudioEncoderConfig, encoder or {})
        self.encoder = ContinuousAudioEncoder(self.config)
        self.vocabulary: Vocabulary | None = None
        self.head: nn.Linear | None = None
        if vocabulary is not None:
            self.use_vocabulary(Vocabulary(vocabulary))

    def new_head(self, vocabulary: Vocabulary) -> nn.Linear:
        return nn.Linear(self.config.output_dim, len(vocabulary)).to(self.encoder.proj.weight.device)

    def forward(self, mel: torch.Tensor, mel_len: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mel [B, n_mels, T]`` padded, ``mel_len [B]`` -> ``(CTC log-probabilities [B, L, V] float32,
        lengths [B])`` at 25 Hz."""
        if self.head is None:
            raise ValueError("the CTC head is not built: give a vocabulary (see the class docstring)")
        hidden, lengths = self.encoder(mel, mel_len)
        return self.head(hidden).float().log_softmax(-1), lengths

    def _step(self, batch: dict[str, Any], split: str) -> torch.Tensor | None:
        log_probs, lengths = self(batch["mel"], batch["mel_len"])
        return ctc_batch_loss(self, batch, log_probs, lengths, split, self.hparams.short_policy)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        return self._step(batch, "val")

    def configure_optimizers(self):
        return adamw_with_schedule(self, self.parameters(), self.hparams)

    def export(self, path: str | os.PathLike) -> None:
        """Write the tower to ``path`` (its state-dict keys, ``AudioEncoderConfig`` in the metadata)."""
        metadata = {"format": WEIGHTS_FORMAT, "config": json.dumps(asdict(self.config))}
        save_safetensors_atomic(self.encoder.state_dict(), path, metadata)

    def on_train_end(self) -> None:
        if self.hparams.export_path is not None and self.trainer.is_global_zero:
            self.export(self.hparams.export_path)
