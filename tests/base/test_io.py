"""Strict weights and atomic writes of the base package."""

import os

import pytest
import torch
from funaudiochat.base import (
    TEMP_PREFIX,
    atomic_write,
    check_state_dict,
    read_config_metadata,
    read_safetensors,
    seeded,
    write_safetensors,
)
from torch import nn


def test_check_state_dict_names_every_problem():
    module = nn.Linear(3, 2)
    bad = {"weight": torch.zeros(2, 4), "extra": torch.zeros(1)}
    with pytest.raises(ValueError) as info:
        check_state_dict(module, bad, "w.safetensors")
    text = str(info.value)
    assert text.startswith("w.safetensors: checkpoint does not fit Linear")
    assert "missing keys: bias" in text and "unexpected keys: extra" in text
    assert "mis-shaped keys: weight (checkpoint (2, 4), model (2, 3))" in text


def test_safetensors_round_trip_with_config_and_corrupt_file(tmp_path):
    path = write_safetensors(tmp_path / "w.safetensors", {"a": torch.arange(3.0)}, config={"dim": 4})
    tensors, metadata = read_safetensors(path)
    assert tensors["a"].tolist() == [0.0, 1.0, 2.0] and read_config_metadata(metadata, path) == {"dim": 4}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="bad.safetensors: not a readable safetensors file"):
        read_safetensors(tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="missing.safetensors: weights file not found"):
        read_safetensors(tmp_path / "missing.safetensors")


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "data.txt"
    target.write_text("old")

    def failing(handle):
        handle.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(target, failing)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["data.txt"]


def test_seeded_leaves_the_callers_random_state_alone():
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    with seeded(0):
        inside = torch.rand(1)
    assert torch.equal(torch.rand(2), expected)
    with seeded(0):
        assert torch.equal(torch.rand(1), inside)


def test_atomic_files_and_folders_get_the_modes_plain_creation_gives(tmp_path):
    from funaudiochat.base import atomic_folder

    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "out.bin", lambda f: f.write(b"x"))
        with atomic_folder(tmp_path / "folder") as staging:
            (staging / "a").write_text("a")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o755  # not mkdtemp's 0700
