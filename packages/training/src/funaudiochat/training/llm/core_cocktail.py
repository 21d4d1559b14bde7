"""Core-Cocktail training (DrVoice / Fun-Audio-Chat report §2.4) as one LightningModule.

    steps [0, stage1_steps)           stage 1: full fine-tune, cosine stage1_lr -> stage1_lr * min_lr_ratio
    at step stage1_steps              merge:   LLM <- alpha * LLM + (1 - alpha) * M0; optimizer moments reset
    steps [stage1_steps, total)       stage 2: cosine stage2_lr -> stage2_lr * min_lr_ratio

M0 is the original text LLM: ``base="initial"`` keeps a CPU copy of the LLM as it was when training started
(the model was built from M0, e.g. by ``model.llm_from`` or a pre-alignment checkpoint whose LLM was frozen);
a directory reads M0 from that checkpoint at merge time (nothing held in memory meanwhile). Only the
shared LLM is merged; the encoders, the adapter and the SRH keep their stage-1 weights (see ``merge.py``).

With ``lora`` the LLM's base weights stay frozen and adapters learn; the merge averages the base with M0 and
scales the adapters by ``alpha``, which is the same ``alpha * M1 + (1 - alpha) * M0`` of the effective
weights.

The phase follows from ``global_step``, and whether the merge happened is stored in Lightning's
checkpoint, so a run resumed in either stage continues correctly. Paper values: stage 1 lr 1e-4 -> 1e-5,
alpha 0.5, stage 2 lr 1e-5 -> 1e-6 (``min_lr_ratio`` 0.1).

Example:
    >>> CoreCocktailModule(model="pre_aligned/", stage1_steps=1000, stage2_steps=1000)
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..errors import UserInputError
from ..merge import Checkpoint, average, base_key, check_alpha
from ..optim import lr_multiplier
from .module import SpeechLLMModule


class CoreCocktailModule(SpeechLLMModule):
    """Stage 1, merge, stage 2 in one ``fit`` (see the module docstring); other arguments as
    ``SpeechLLMModule``. ``trainer.max_steps`` should be ``stage1_steps + stage2_steps``."""

    def __init__(
        self,
        model: str | Mapping[str, Any] = "???",
        stage1_steps: int = 1000,
        stage2_steps: int = 1000,
        stage1_lr: float = 1e-4,
        stage2_lr: float = 1e-5,
        min_lr_ratio: float = 0.1,
        alpha: float = 0.5,
        base: str = "initial",
        warmup_steps: int = 0,
        freeze: Sequence[str] = (),
        lora: Mapping[str, Any] | None = None,
        weight_decay: float = 0.0,
        betas: Sequence[float] = (0.9, 0.999),
        export_dir: str | None = None,
    ):
        if stage1_steps < 1 or stage2_steps < 1:
            raise ValueError(
                f"stage1_steps and stage2_steps must be >= 1, got {stage1_steps} and {stage2_steps}"
            )
        if stage2_lr <= 0:
            raise ValueError(f"stage2_lr must be > 0, got {stage2_lr}")
        check_alpha(alpha)
        if lora is not None and "language_model" in freeze:
            raise ValueError("lora adapts the LLM; do not also freeze language_model")
        super().__init__(
            model=model,
            freeze=freeze,
            lora=None,
            lr=stage1_lr,
            min_lr_ratio=min_lr_ratio,
            schedule="cosine",
            warmup_steps=warmup_steps,
            total_steps=stage1_steps + stage2_steps,
            weight_decay=weight_decay,
            betas=betas,
            export_dir=export_dir,
        )
        self.save_hyperparameters()
        if base != "initial" and not os.path.isdir(base):
            raise ValueError(f"base must be 'initial' or a checkpoint folder of M0; {base!r} is neither")
        self.merged = False
        self._initial_llm: dict[str, torch.Tensor] | None = None
        if base == "initial":
            self._initial_llm = {
                k: v.detach().to("cpu", copy=True) for k, v in self.model.language_model.state_dict().items()
            }
        if lora is not None:
            from .module import add_lora

            add_lora(self.model.language_model, lora)

    # -- schedule -------------------------------------------------------------------------------------------

    def lr_factor(self, step: int) -> float:
        """Multiplier of ``stage1_lr`` at optimizer step ``step``: a cosine per stage."""
        h = self.hparams
        if step < h.stage1_steps:
            return lr_multiplier("cosine", h.warmup_steps, h.stage1_steps, h.min_lr_ratio)(step)
        stage2 = lr_multiplier("cosine", 0, h.stage2_steps, h.min_lr_ratio)(step - h.stage1_steps)
        return stage2 * h.stage2_lr / h.stage1_lr

    def configure_optimizers(self):
        h = self.hparams
        optimizer = torch.optim.AdamW(
            self.trainable_parameters(), lr=h.stage1_lr, betas=tuple(h.betas), weight_decay=h.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- the merge ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def merge_llm(self) -> None:
        """LLM <- alpha * LLM + (1 - alpha) * M0, in place; then the optimizer starts stage 2 afresh.

        With LoRA the LLM is ``W + dW`` (W frozen, dW = the adapters): W <- alpha W + (1 - alpha) M0 and the
        adapters' B matrices are scaled by alpha, which is the same merge (exactly ``alpha dW``)."""
        alpha = self.hparams.alpha
        if self._initial_llm is not None:
            source: Mapping | Checkpoint = {"language_model." + k: v for k, v in self._initial_llm.items()}
        else:
            source = Checkpoint(self.hparams.base, "base")
        for name, param in self.model.language_model.state_dict(keep_vars=True).items():
            if "lora_" in name:
                if ".lora_B." in name:
                    param.mul_(alpha)
                continue
            name = name.replace(".base_layer.", ".")
            key = base_key("language_model." + name, source)
            if key is None:
                raise ValueError(f"M0 ({self.hparams.base}) has no tensor for language_model.{name}")
            merged, _ = average(param.detach().cpu(), source[key], alpha, "language_model." + name)
            param.copy_(merged.to(param.device))
        if self._trainer is not None:
            for optimizer in self.trainer.optimizers:
                optimizer.state.clear()
        self.merged = True

    def on_fit_start(self) -> None:
        super().on_fit_start()
        h, max_steps = self.hparams, self.trainer.max_steps
        if max_steps == -1 or max_steps > h.stage1_steps + h.stage2_steps:
            raise UserInputError(
                f"trainer.max_steps is {max_steps} but Core-Cocktail runs stage1_steps + stage2_steps = "
                f"{h.stage1_steps + h.stage2_steps} steps; set trainer.max_steps to that (or fewer, to stop "
                "early and resume later)"
            )

    def on_train_batch_start(self, batch, batch_idx) -> None:
        if not self.merged and self.global_step >= self.hparams.stage1_steps:
            self.merge_llm()
            self.log("core_cocktail/merged_at_step", float(self.global_step))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["core_cocktail_merged"] = self.merged

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.merged = bool(checkpoint.get("core_cocktail_merged", False))

    @property
    def stage(self) -> int:
        """1 before the merge, 2 after."""
        return 2 if self.merged else 1

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("core_cocktail/stage", float(self.stage))
        return loss


def stage_lr(step: int, stage1_steps: int, stage2_steps: int, lr1: float, lr2: float, ratio: float) -> float:
    """The learning rate Core-Cocktail uses at ``step`` (no warmup): for plots and tests."""
    if step < stage1_steps:
        progress = step / stage1_steps
        return lr1 * (ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
    progress = (step - stage1_steps) / stage2_steps
    return lr2 * (ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
