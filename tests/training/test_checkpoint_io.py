"""Atomic checkpoint writes: all or nothing, and a killed save's temporary file is cleaned up later."""

import pytest
import torch
from funaudiochat.training.checkpoint_io import AtomicCheckpointIO


def test_save_is_atomic_and_cleans_stale_temporaries(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "ckpts" / "last.ckpt"
    io.save_checkpoint({"step": 1}, target)
    assert torch.load(target, weights_only=True) == {"step": 1}
    stale = target.parent / ".tmp-last.ckpt.abc123"
    stale.write_bytes(b"half a checkpoint")  # what SIGKILL during a save leaves

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"step": 1}  # the old checkpoint survives
    io.save_checkpoint({"step": 3}, target)
    assert torch.load(target, weights_only=True) == {"step": 3}
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]
    with pytest.raises(TypeError, match="storage_options"):
        io.save_checkpoint({}, target, storage_options={"x": 1})
