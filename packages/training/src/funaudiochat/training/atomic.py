"""Atomic file writes for training outputs; the helpers live in ``funaudiochat.base.atomic`` (one copy for
every package) and are re-exported here for the training code."""

from funaudiochat.base.atomic import TEMP_PREFIX, atomic_save, atomic_write, atomic_write_text

__all__ = ["TEMP_PREFIX", "atomic_save", "atomic_write", "atomic_write_text"]
