"""What the encoders trained on transcripts (the speech tokenizer, the audio encoder) share: the CTC head's
vocabulary, taken from the data and kept in checkpoints (``CTCVocabulary``), and the objective (one batch of
``collate_tokenizer`` and its frame log-probabilities -> the loss, with the too-short policy and the logged
figures)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from .ctc_targets import BLANK, Vocabulary, ctc_min_frames, edit_distance, greedy_decode

SHORT_POLICIES = ("error", "skip")


class CTCVocabulary:
    """Mixin of a LightningModule with a CTC head over a vocabulary known only once the data is: the head is
    built by ``new_head(vocabulary)`` from ``model.vocabulary`` or, in ``setup``, from the data module's
    ``vocabulary``; checkpoints keep the symbols (``ctc_vocabulary``) so a restored module rebuilds it."""

    vocabulary: Vocabulary | None  # both set to None in the module's __init__ (a class-level value would
    head: nn.Module | None  # hide the submodule that nn.Module keeps out of the instance's __dict__)

    def new_head(self, vocabulary: Vocabulary) -> nn.Module:
        raise NotImplementedError

    def use_vocabulary(self, vocabulary: Vocabulary) -> None:
        """Build the head for ``vocabulary``; with a head already built, the vocabulary must be the same."""
        if self.head is not None:
            if vocabulary != self.vocabulary:
                raise ValueError(
                    f"the data's CTC vocabulary {list(vocabulary.symbols)} differs from the model's "
                    f"{list(self.vocabulary.symbols)}"
                )
            return
        self.vocabulary = vocabulary
        self.head = self.new_head(vocabulary)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        data_vocabulary = getattr(datamodule, "vocabulary", None)
        if isinstance(data_vocabulary, Vocabulary):
            self.use_vocabulary(data_vocabulary)
        if self.head is None:
            raise ValueError(
                "the CTC vocabulary is unknown: pass model.vocabulary, or train with a TokenizerDataModule"
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ctc_vocabulary"] = list(self.vocabulary.symbols) if self.vocabulary else None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        symbols = checkpoint.get("ctc_vocabulary")
        if symbols:
            self.use_vocabulary(Vocabulary(symbols))


def ctc_batch_loss(
    module: L.LightningModule,
    batch: dict[str, Any],
    log_probs: torch.Tensor,
    lengths: torch.Tensor,
    split: str,
    short_policy: str,
    targets: tuple[torch.Tensor, torch.Tensor] | None = None,
    name: str = "loss",
    rate_hz: int = 25,
) -> torch.Tensor | None:
    """CTC loss (blank 0, mean over the batch of the per-unit loss) of a ``collate_tokenizer`` batch.

    module: the LightningModule that logs ``{split}/loss`` (and ``val/unit_error_rate``, ``train/skipped``);
    batch: ``mel_len [B]`` (100 Hz frames), ``targets [B, U]``, ``target_len [B]``, ``utt`` (names);
    log_probs: ``[B, L, V]`` float32 frame log-probabilities; lengths: valid frames per item ``[B]``;
    split: ``"train"`` or ``"val"``;
    short_policy: ``"error"`` raises for an item with fewer frames than CTC needs for its transcript,
        ``"skip"`` leaves it out of the loss;
    targets: ``(targets [B, U], target_len [B])`` other than the batch's own (e.g. text tokens);
    name: the logged figures are ``{split}/{name}``, ``val/{name}_unit_error_rate``, ``train/{name}_skipped``
        (``"loss"`` keeps the names ``{split}/loss``, ``val/unit_error_rate``, ``train/skipped``);
    rate_hz: frames per second of ``log_probs`` (for the error message).
    Returns None when every item was left out."""
    targets, target_len = targets if targets is not None else (batch["targets"], batch["target_len"])
    prefix = "" if name == "loss" else f"{name}_"
    frames, seconds = lengths.tolist(), (batch["mel_len"].float() / 100).tolist()
    keep = []
    for i, (n, row) in enumerate(zip(target_len.tolist(), targets.tolist(), strict=True)):
        needed = ctc_min_frames(row[:n])
        if frames[i] >= needed:
            keep.append(i)
        elif short_policy == "error":
            raise ValueError(
                f"{batch['utt'][i]}: {frames[i]} frames at {rate_hz} Hz ({seconds[i]:.2f} s) "
                f"cannot carry its transcript of {n} units (CTC needs >= {needed} frames); drop it, "
                "use phoneme targets, or set model.short_policy=skip"
            )
    if split == "train" and short_policy == "skip":
        skipped = float(len(frames) - len(keep))
        module.log(f"train/{prefix}skipped", skipped, reduce_fx="sum", on_step=False, on_epoch=True)
    if not keep:
        return None
    index = torch.tensor(keep, device=log_probs.device)
    loss = F.ctc_loss(
        log_probs[index].transpose(0, 1),
        targets[index],
        lengths[index],
        target_len[index],
        blank=BLANK,
        reduction="mean",
        zero_infinity=True,
    )
    module.log(f"{split}/{name}", loss, prog_bar=True, batch_size=len(keep))
    if split == "val":
        best = log_probs.argmax(-1).cpu()
        errors, total = 0, 0
        for i in keep:
            hypothesis = greedy_decode(best[i, : int(lengths[i])].tolist())
            reference = targets[i, : int(target_len[i])].tolist()
            errors += edit_distance(hypothesis, reference)
            total += len(reference)
        module.log(f"val/{prefix}unit_error_rate", errors / max(total, 1), batch_size=len(keep))
    return loss
