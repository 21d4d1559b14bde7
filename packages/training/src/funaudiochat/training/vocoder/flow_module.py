"""Flow-matching training (tokens -> mel) as a LightningModule around ``CausalFlowMatching``.

The loss is the vocoder's own ``CausalFlowMatching.forward``: conditional flow matching (MSE on the
velocity, cosine t-schedule) with CosyVoice3's random prompt masking (half the items get their first
``randint(0, 0.3 T)`` target frames as the condition, which is what teaches voice cloning), classifier-free
dropout of the conditions (``training_cfg_rate``), and the chunk-causal mask on half the batches.
Batches are ``VocoderDataModule(task="flow")``'s: ``speech_token``, ``speech_feat``, lengths, ``embedding``.

Optimizer: AdamW with a warmup + schedule from ``optim.py`` (stepped every optimizer step). Gradient
clipping and accumulation are Trainer settings (``gradient_clip_val``, ``accumulate_grad_batches``).
At the end of ``fit`` the flow's state dict is written to ``export_path`` (safetensors, atomically) with its
``FlowConfig`` in the metadata, so that ``funaudiochat.vocoder.loading.load_flow(export_path)`` and
``funaudiochat vocode --flow`` build the right size.

Example (recipe ``packages/training/recipes/vocoder_flow.yaml``):
    >>> module = FlowMatchingModule(flow={"preset": "tiny"}, lr=1e-3, export_path="runs/flow.safetensors")
"""

from __future__ import annotations

import json
from typing import Any

import lightning as L
import torch
from funaudiochat.vocoder import CausalFlowMatching, FlowConfig
from funaudiochat.vocoder.loading import FLOW_WEIGHTS_FORMAT

from ..config import build_config, config_to_dict
from ..optim import adamw_with_schedule, check_optimizer_args
from ..weights import save_safetensors_atomic

WEIGHTS_FORMAT = FLOW_WEIGHTS_FORMAT  # what funaudiochat.vocoder.loading.load_flow accepts


class FlowMatchingModule(L.LightningModule):
    """Trains ``CausalFlowMatching``; logs ``train/loss`` (and ``val/loss`` when validation data is given).

    Args:
        flow: ``FlowConfig`` overrides, e.g. ``{"preset": "tiny", "depth": 4}`` (default: the official size).
        lr, betas, weight_decay: AdamW settings.
        schedule, warmup_steps, min_lr_ratio: the LR schedule (see ``optim.py``).
        total_steps: the schedule's length for ``linear``/``cosine``; default: the Trainer's estimate.
        init_weights: a safetensors/``flow.pt`` state dict to start from (fine-tuning), or ``None``.
        export_path: where ``fit`` writes the final weights (``.safetensors``), or ``None`` for none.
    """

    def __init__(
        self,
        flow: dict[str, Any] | None = None,
        lr: float = 1e-4,
        betas: tuple[float, float] | list[float] = (0.9, 0.999),
        weight_decay: float = 0.01,
        schedule: str = "constant",
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.0,
        total_steps: int | None = None,
        init_weights: str | None = None,
        export_path: str | None = None,
    ):
        super().__init__()
        check_optimizer_args(lr, weight_decay, betas, schedule)
        if export_path is not None and not str(export_path).endswith(".safetensors"):
            raise ValueError(f"export_path must end in .safetensors, got {export_path!r}")
        self.save_hyperparameters()
        self.config: FlowConfig = build_config(FlowConfig, flow)
        if init_weights is not None:
            self.flow = CausalFlowMatching.from_pretrained(init_weights, self.config).train()
        else:
            self.flow = CausalFlowMatching(self.config)

    def _check(self, batch: dict[str, Any]) -> None:
        bins = batch["speech_feat"].shape[-1]
        if bins != self.config.output_size:
            raise ValueError(f"the data's mel has {bins} bins but the flow makes {self.config.output_size}")

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self._check(batch)
        loss = self.flow(batch)["loss"]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["speech_token"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        # the same draws (t, noise, masking) at every validation, so the numbers are comparable
        self._check(batch)
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        loss = self.flow(batch, streaming=False, generator=generator)["loss"]
        self.log("val/loss", loss, prog_bar=True, batch_size=batch["speech_token"].shape[0])
        return loss

    def configure_optimizers(self):
        return adamw_with_schedule(self, self.flow.parameters(), self.hparams)

    def export(self, path: str) -> None:
        """Write the flow's state dict (the CosyVoice3 ``flow`` layout) to ``path`` (safetensors)."""
        metadata = {"format": WEIGHTS_FORMAT, "config": json.dumps(config_to_dict(self.config))}
        save_safetensors_atomic(self.flow.state_dict(), path, metadata)

    def on_train_end(self) -> None:
        if self.hparams.export_path is not None and self.trainer.is_global_zero:
            self.export(self.hparams.export_path)
