"""Atomic file writes: a temporary file in the target's folder, flushed and fsynced, then ``os.replace``.

A reader (another DataLoader worker, another rank, a server) sees either the old file, no file, or the
complete new one, never a partial write; an interrupted writer leaves no temporary file behind.

Example:
    >>> atomic_write("train.jsonl", lambda f: f.write(b"{}\\n"))
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TEMP_PREFIX = ".tmp-"  # temporary names are ``.tmp-<target name>.<random>`` beside the target


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Create ``path`` (and its folder) from ``write(binary_file)``; returns the path."""

    def save(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            write(handle)

    return atomic_save(path, save)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """``atomic_write`` of UTF-8 text."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_save(path: str | os.PathLike, save: Callable[[str], object]) -> Path:
    """``save(temporary_path)`` (any writer that takes a file name: ``safetensors.torch.save_file``,
    ``np.save``), then the temporary file is flushed to disk and renamed onto ``path``; returns the path."""
    with atomic_path(path) as tmp:
        save(tmp)
    return Path(path)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """A temporary file name beside ``path`` (ending in ``suffix``) to write to in the block; when the block
    ends without an error the file is flushed to disk and renamed onto ``path``, otherwise removed. For
    writers that keep a file open across many calls (audio written as it streams)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the file gets what open() would give it
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def atomic_folder(path: str | os.PathLike, replace: bool = True) -> Iterator[Path]:
    """Build a folder in a temporary folder beside ``path`` (yielded), then rename it onto ``path`` when
    the block ends without an error (removed otherwise). An existing ``path`` is replaced (moved aside,
    then deleted) when ``replace``, else it is a ``ValueError``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{target.name}.", dir=target.parent))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; the folder gets what mkdir would
        if target.exists():
            if not replace:
                raise ValueError(f"{target}: already exists; give a new folder")
            old = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{target.name}.old.", dir=target.parent))
            os.replace(target, old / "previous")
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
