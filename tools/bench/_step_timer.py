"""``StepTimer``: the Lightning callback the benchmarks of this folder time training steps with."""

from __future__ import annotations

import time

import lightning as L
import torch


class StepTimer(L.Callback):
    """Seconds of each training batch (every optimizer's step), the first one left out, and the last loss
    the step returned (None when it returns none, as HiFT's manual optimization does)."""

    def __init__(self):
        self.seconds: list[float] = []
        self.loss: float | None = None
        self._start = 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if batch_idx > 0:
            self.seconds.append(time.perf_counter() - self._start)
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self.loss = float(loss)
