"""Lightning checkpoints written atomically: a temporary file in the same folder, flushed to disk, then
``os.replace``d onto the target. A run killed while saving (SIGKILL, power loss) leaves the previous
checkpoint intact and never a truncated one that ``--ckpt_path`` would fail on; the temporary file it
leaves is removed by the next successful save of the same checkpoint."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .atomic import TEMP_PREFIX, atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose ``save_checkpoint`` is all-or-nothing (local file systems)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        target = atomic_write(path, lambda handle: torch.save(checkpoint, handle))
        for stale in target.parent.glob(f"{TEMP_PREFIX}{target.name}.*"):  # left by a run killed mid-write
            stale.unlink(missing_ok=True)
