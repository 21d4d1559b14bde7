"""Speech tokenizer training: S3 encoder -> FSQ bottleneck (6561 codes) -> CTC head over transcript units.

As S3 tokenizers are trained, the codes are shaped by a transcript objective, so they carry what was said
(a supervised semantic tokenizer), not how the audio sounded:

    log-mel [128, T] -> SpeechEncoder (the tokenizer's own, 25 Hz) -> FSQ, straight-through
      -> q in {-1, 0, 1}^8 -> CTC head: Linear(8 -> head_width), head_layers residual conv blocks
         (LayerNorm, Conv1d k=head_kernel, GELU, dropout), Linear(head_width -> vocabulary size)
      -> CTC loss (blank 0, zero_infinity, mean over the batch of the per-target-unit loss) at 25 Hz

FSQ, straight-through (``fsq_straight_through``): the forward pass is exactly ``FSQCodebook.levels`` of
the inference tokenizer (``project_down`` in float32 also under mixed precision, tanh, x0.999, round), so
the codes seen in training are those ``SpeechTokenizer.encode`` gives once exported; the backward pass
treats the rounding as the identity (gradient of ``tanh(.) * 0.999``).

Utterances too short for their transcript (25 Hz frames < target units + repeated neighbours, which CTC
cannot align) follow ``short_policy``: ``"error"`` (default) raises a ``ValueError`` naming the utterance
and both lengths; ``"skip"`` leaves them out of the loss and counts them in ``train/skipped`` (per epoch;
a batch with nothing left skips its optimizer step, which Lightning supports on one device only; filter the
data or use phonemes instead of characters on multi-device runs).

Logged: ``train/loss``, ``val/loss``, ``train/codes_used`` / ``val/codes_used`` (distinct codes in the
batch), ``train/code_perplexity`` (exp of the entropy of the batch's code histogram; at most 6561), and
``val/unit_error_rate`` (greedy CTC decoding, edit distance / reference units: CER or PER).

At the end of ``fit`` the encoder and quantizer are written to ``export_path`` in the ``SpeechTokenizer``
layout (the ``s3tokenizer`` state-dict keys, config in the metadata), atomically; load them with
``SpeechTokenizer.from_safetensors``. The CTC head is not exported (it stays in Lightning's checkpoint).

Example (recipe ``packages/training/recipes/tokenizer.yaml``):
    >>> module = TokenizerTrainingModule(tokenizer={"preset": "tiny"}, export_path="runs/tok.safetensors")
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from funaudiochat.tokenizer import CODEBOOK_SIZE, SpeechTokenizer, SpeechTokenizerConfig, levels_to_codes
from torch import nn

from ..config import build_config
from ..optim import adamw_with_schedule, check_optimizer_args
from ..weights import save_safetensors_atomic
from .ctc_loss import SHORT_POLICIES, CTCVocabulary, ctc_batch_loss
from .ctc_targets import Vocabulary

WEIGHTS_FORMAT = "funaudiochat-speech-tokenizer"
FSQ_SHRINK = 0.999  # multiplied in float32, as the reference graph (and FSQCodebook.levels) does


def fsq_straight_through(project_down: nn.Linear, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden ``[..., D]`` -> ``(q, codes)``: ``q [..., 8]`` float in {-1, 0, 1} with straight-through
    gradients, ``codes [...]`` long in [0, 6561).

    ``q + 1`` equals ``FSQCodebook.levels(hidden)`` exactly; ``codes`` equals ``FSQCodebook.encode``."""
    weight = project_down.weight
    with torch.autocast(device_type=hidden.device.type, enabled=False):
        h = project_down(hidden.to(weight.dtype)).float().tanh() * FSQ_SHRINK
    q = h + (h.round() - h).detach()
    return q, levels_to_codes(q.detach() + 1)


class _ConvBlock(nn.Module):
    """Pre-LN residual conv block over ``[B, T, W]`` with padded frames held at zero."""

    def __init__(self, width: int, kernel: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.conv = nn.Conv1d(width, width, kernel, padding=kernel // 2)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.norm(x) * mask
        y = F.gelu(self.conv(y.transpose(1, 2)).transpose(1, 2))
        return (x + self.dropout(y)) * mask


class CTCHead(nn.Module):
    """Quantised FSQ values ``[B, T, 8]`` -> CTC logits ``[B, T, vocabulary]``."""

    def __init__(self, vocabulary_size: int, width: int = 256, layers: int = 2, kernel: int = 5, dropout=0.1):
        super().__init__()
        self.project_up = nn.Linear(8, width)
        self.blocks = nn.ModuleList(_ConvBlock(width, kernel, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.classifier = nn.Linear(width, vocabulary_size)

    def forward(self, q: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(q.shape[1], device=q.device)[None, :] < lengths[:, None].to(q.device))[..., None]
        mask = mask.to(q.dtype)
        x = self.project_up(q) * mask
        for block in self.blocks:
            x = block(x, mask)
        return self.classifier(self.norm(x))


class TokenizerTrainingModule(CTCVocabulary, L.LightningModule):
    """Trains a ``SpeechTokenizer``'s encoder and FSQ projection with CTC (see the module docstring).

    Args:
        tokenizer: ``SpeechTokenizerConfig`` overrides: ``{"preset": "tiny"}``, ``{"preset": "v3"}`` (the
            official CosyVoice3 / Fun-Audio-Chat size: 12 blocks of 1280), ``{"preset": "v2"}`` (6 blocks), or
            any fields. ``None``: the config of ``init_weights`` when given, else V3.
        vocabulary: the CTC symbols (blank excluded); ``None`` takes the data module's ``vocabulary`` in
            ``setup`` (``TokenizerDataModule``), which is how recipes run.
        head_width, head_layers, head_kernel, head_dropout: the CTC head (``CTCHead``); ``head_kernel`` odd.
        lr, betas, weight_decay: AdamW settings.
        schedule, warmup_steps, min_lr_ratio, total_steps: the LR schedule (``optim.lr_multiplier``);
            ``total_steps`` defaults to the Trainer's estimate for ``linear``/``cosine``.
        short_policy: ``"error"`` or ``"skip"`` for utterances too short for their transcript.
        init_weights: a ``SpeechTokenizer`` safetensors file (or a bare s3tokenizer state dict saved as
            safetensors) to start from, e.g. to fine-tune the official V3 weights.
        export_path: where ``fit`` writes the tokenizer (``.safetensors``), or ``None`` for none.
    """

    def __init__(
        self,
        tokenizer: dict[str, Any] | None = None,
        vocabulary: list[str] | None = None,
        head_width: int = 256,
        head_layers: int = 2,
        head_kernel: int = 5,
        head_dropout: float = 0.1,
        lr: float = 1e-3,
        betas: tuple[float, float] | list[float] = (0.9, 0.98),
        weight_decay: float = 0.01,
        schedule: str = "cosine",
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.0,
        total_steps: int | None = None,
        short_policy: str = "error",
        init_weights: str | None = None,
        export_path: str | None = None,
    ):
        super().__init__()
        check_optimizer_args(lr, weight_decay, betas, schedule)
        if short_policy not in SHORT_POLICIES:
            raise ValueError(f"short_policy must be one of {list(SHORT_POLICIES)}, got {short_policy!r}")
        if head_width < 1 or head_layers < 0 or head_kernel < 1 or head_kernel % 2 == 0:
            raise ValueError(
                f"need head_width >= 1, head_layers >= 0 and an odd head_kernel >= 1, got "
                f"{head_width}, {head_layers}, {head_kernel}"
            )
        if not 0.0 <= head_dropout < 1.0:
            raise ValueError(f"head_dropout must lie in [0, 1), got {head_dropout}")
        if export_path is not None and not str(export_path).endswith(".safetensors"):
            raise ValueError(f"export_path must end in .safetensors, got {export_path!r}")
        self.save_hyperparameters()
        if init_weights is not None:
            model = SpeechTokenizer.from_safetensors(init_weights)
            if tokenizer is not None:
                wanted = build_config(SpeechTokenizerConfig, tokenizer)
                if wanted != model.config:
                    raise ValueError(
                        f"init_weights {init_weights} holds a tokenizer of config {asdict(model.config)}, "
                        f"but model.tokenizer asks for {asdict(wanted)}; set model.tokenizer to null to use "
                        "the file's"
                    )
            self.config: SpeechTokenizerConfig = model.config
            self.tokenizer = model.train()
        else:
            self.config = build_config(SpeechTokenizerConfig, tokenizer)
            self.tokenizer = SpeechTokenizer(self.config)
        self.vocabulary: Vocabulary | None = None
        self.head: CTCHead | None = None
        if vocabulary is not None:
            self.use_vocabulary(Vocabulary(vocabulary))

    # ---- the CTC head (CTCVocabulary builds it once the vocabulary is known) --------------------
    def new_head(self, vocabulary: Vocabulary) -> CTCHead:
        h = self.hparams
        head = CTCHead(len(vocabulary), h.head_width, h.head_layers, h.head_kernel, h.head_dropout)
        return head.to(self.tokenizer.device)

    # ---- forward -------------------------------------------------------------------------------
    def quantize(self, mels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-mel ``[n_mels, T_i]`` per item -> ``(q [B, L, 8] padded, codes [B, L] padded with -1,
        lengths [B])`` at 25 Hz; ``q`` carries straight-through gradients."""
        for i, mel in enumerate(mels):
            if mel.ndim != 2 or mel.shape[0] != self.config.n_mels:
                raise ValueError(
                    f"mel {i} must be [{self.config.n_mels}, frames] (the tokenizer's n_mels), "
                    f"got {tuple(mel.shape)}"
                )
        dtype = self.tokenizer.encoder.conv1.weight.dtype  # fp32 unless trained in "true" half precision
        hidden, spans = self.tokenizer.encoder([m.to(dtype) for m in mels])
        q, codes = fsq_straight_through(self.tokenizer.quantizer._codebook.project_down, hidden)
        lengths = torch.tensor([n for _, n in spans], dtype=torch.long, device=q.device)
        pieces = [q[s : s + n] for s, n in spans]
        code_pieces = [codes[s : s + n] for s, n in spans]
        q_pad = nn.utils.rnn.pad_sequence(pieces, batch_first=True)
        codes_pad = nn.utils.rnn.pad_sequence(code_pieces, batch_first=True, padding_value=-1)
        return q_pad, codes_pad, lengths

    @torch.no_grad()
    def encode_mel(self, mels: list[torch.Tensor]) -> list[torch.Tensor]:
        """The codes the trained quantiser gives for each log-mel (no windowing: up to one 30 s window)."""
        _, codes, lengths = self.quantize(mels)
        return [codes[i, : int(n)] for i, n in enumerate(lengths.tolist())]

    def forward(self, mels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-mels -> ``(CTC log-probabilities [B, L, V] float32, codes [B, L], lengths [B])``."""
        if self.head is None:
            raise ValueError("the CTC head is not built: give a vocabulary (see the class docstring)")
        q, codes, lengths = self.quantize(mels)
        logits = self.head(q.to(self.head.project_up.weight.dtype), lengths)
        return logits.float().log_softmax(-1), codes, lengths

    # ---- steps ---------------------------------------------------------------------------------
    def _step(self, batch: dict[str, Any], split: str) -> torch.Tensor | None:
        mel, mel_len = batch["mel"], batch["mel_len"]
        log_probs, codes, lengths = self([mel[i, :, : int(n)] for i, n in enumerate(mel_len.tolist())])
        self._log_codes(codes, split, len(mel_len))
        return ctc_batch_loss(self, batch, log_probs, lengths, split, self.hparams.short_policy)

    def _log_codes(self, codes: torch.Tensor, split: str, batch_size: int) -> None:
        valid = codes[codes >= 0]
        if valid.numel() == 0:
            return
        counts = torch.bincount(valid, minlength=CODEBOOK_SIZE).float()
        used = float((counts > 0).sum())
        self.log(f"{split}/codes_used", used, batch_size=batch_size)
        if split == "train":
            p = counts[counts > 0] / counts.sum()
            self.log("train/code_perplexity", float(torch.exp(-(p * p.log()).sum())), batch_size=batch_size)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        return self._step(batch, "val")

    # ---- optimisation and export ---------------------------------------------------------------
    def configure_optimizers(self):
        return adamw_with_schedule(self, self.parameters(), self.hparams)

    def export(self, path: str) -> None:
        """Write the encoder + quantizer to ``path`` in the ``SpeechTokenizer`` safetensors layout."""
        metadata = {"format": WEIGHTS_FORMAT, "config": json.dumps(asdict(self.config))}
        if self.vocabulary is not None:
            metadata["ctc_vocabulary"] = json.dumps(list(self.vocabulary.symbols), ensure_ascii=False)
        save_safetensors_atomic(self.tokenizer.state_dict(), path, metadata)

    def on_train_end(self) -> None:
        if self.hparams.export_path is not None and self.trainer.is_global_zero:
            self.export(self.hparams.export_path)
