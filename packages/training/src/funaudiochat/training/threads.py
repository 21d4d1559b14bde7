"""The threads a running fit may use, raised while it runs by whoever started it.

A scheduler that runs several fits at once (``demo.schedule``) starts each with a share of the cores; when
the others end and nothing can start beside the one left, it gives that one every core by writing the
number into a file named by the ``FUNAUDIOCHAT_THREADS_FILE`` environment variable. ``ThreadsFromFile``
(added to every fit's trainer when that variable is set, ``cli.trainer_objects``) reads the file between
training steps and calls ``torch.set_num_threads``.

The call is made in the training loop's own thread: an OpenMP thread count belongs to the thread that sets
it. Matrix products, attention and the optimiser follow the new count at once; kernels ``torch.compile``
generated keep the count they were compiled with (inductor writes it into the kernel).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

THREADS_FILE_ENV = "FUNAUDIOCHAT_THREADS_FILE"


def read_threads(path: Path) -> int | None:
    """The thread count file ``path`` holds (a positive integer), or ``None`` when it is missing or holds
    anything else (a file being replaced is read again at the next check)."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def write_threads(path: Path, threads: int) -> None:
    """Tell the fit that reads ``path`` to use ``threads`` threads (written atomically)."""
    from funaudiochat.base.atomic import atomic_write_text

    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    atomic_write_text(Path(path), f"{threads}\n")


class ThreadsFromFile(Callback):
    """Sets ``torch.set_num_threads`` to the count in ``path`` (``read_threads``) whenever it changes.

    path: the file (``THREADS_FILE_ENV``'s value).
    every: seconds between two reads of it (the first is at the first training step).

    Example:
        >>> trainer = L.Trainer(callbacks=[ThreadsFromFile(os.environ[THREADS_FILE_ENV])])
    """

    def __init__(self, path: str | os.PathLike, every: float = 10.0):
        if every < 0:
            raise ValueError(f"every must be >= 0 seconds, got {every}")
        self.path = Path(path)
        self.every = every
        self._next_read = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.monotonic()
        if now < self._next_read:
            return
        self._next_read = now + self.every
        self.apply()

    def apply(self) -> None:
        """Read the file now and set torch's threads to its count if that differs."""
        import torch

        threads = read_threads(self.path)
        if threads is None or threads == torch.get_num_threads():
            return
        torch.set_num_threads(threads)
        rank_zero_info(f"training now uses {threads} thread(s) ({self.path})")


def threads_callback() -> ThreadsFromFile | None:
    """A ``ThreadsFromFile`` on the file ``THREADS_FILE_ENV`` names, or ``None`` when it is not set."""
    path = os.environ.get(THREADS_FILE_ENV)
    return ThreadsFromFile(path) if path else None
