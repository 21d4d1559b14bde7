"""Fixtures of the training tests: a Lightning callback that records per-step values, and quiet Trainer
settings (no checkpoints, logger or progress bar)."""

from __future__ import annotations

import pytest

QUIET_TRAINER = {
    "enable_checkpointing": False,
    "logger": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "accelerator": "cpu",
    "devices": 1,
}


@pytest.fixture
def quiet_trainer() -> dict:
    """Keyword arguments for a silent CPU ``lightning.Trainer``."""
    return dict(QUIET_TRAINER)


@pytest.fixture
def recorder():
    """``recorder(*keys)`` -> a callback whose ``.values[key]`` lists ``callback_metrics[key]`` per batch."""
    import lightning as L

    class Recorder(L.Callback):
        def __init__(self, keys):
            self.values = {k: [] for k in keys}

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            for key, values in self.values.items():
                values.append(float(trainer.callback_metrics[key]))

    return lambda *keys: Recorder(keys)
