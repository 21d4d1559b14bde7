"""Recipe mappings -> config dataclasses; LR schedules; atomic safetensors writes."""

import math

import pytest
import torch
from funaudiochat.training.config import build_config, config_to_dict, presets
from funaudiochat.training.optim import lr_multiplier
from funaudiochat.training.weights import save_safetensors_atomic
from funaudiochat.vocoder import FlowConfig, HiFTConfig
from safetensors import safe_open
from safetensors.torch import load_file


def test_build_config():
    assert build_config(FlowConfig, None) == FlowConfig()
    assert build_config(FlowConfig, {"preset": "tiny"}) == FlowConfig.tiny()
    config = build_config(FlowConfig, {"preset": "tiny", "depth": 3, "dropout": 0})
    assert config.depth == 3 and config.dim == FlowConfig.tiny().dim and config.dropout == 0.0
    hift = build_config(HiFTConfig, {"f0_dtype": "float32", "upsample_rates": [8, 5, 3]})
    assert hift.f0_dtype == torch.float32
    assert config_to_dict(HiFTConfig())["f0_dtype"] == "float64"
    assert "tiny" in presets(FlowConfig) and "default" in presets(FlowConfig)
    same = FlowConfig.tiny()
    assert build_config(FlowConfig, same) is same


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"preset": "huge"}, "unknown FlowConfig preset 'huge'"),
        ({"depht": 3}, r"unknown FlowConfig fields \['depht'\]"),
        ({"depth": "three"}, "FlowConfig.depth must be of type int"),
        ({"depth": 2.5}, "FlowConfig.depth must be of type int"),
        ({"t_scheduler": 1}, "must be of type str"),
        (["depth", 3], "must be a mapping"),
    ],
)
def test_build_config_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_config(FlowConfig, overrides)
    with pytest.raises(ValueError, match="torch dtype"):
        build_config(HiFTConfig, {"f0_dtype": "double-ish"})


def test_schedules():
    constant = lr_multiplier("constant", warmup_steps=4)
    assert [constant(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cosine = lr_multiplier("cosine", warmup_steps=0, total_steps=10, min_lr_ratio=0.1)
    assert cosine(0) == 1.0 and cosine(10) == pytest.approx(0.1) and cosine(50) == pytest.approx(0.1)
    assert cosine(5) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    linear = lr_multiplier("linear", warmup_steps=2, total_steps=12)
    assert linear(1) == 1.0 and linear(12) == pytest.approx(0.0) and linear(7) == pytest.approx(0.5)
    inverse = lr_multiplier("inverse_sqrt", warmup_steps=4)
    assert inverse(15) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="total_steps"):
        lr_multiplier("cosine", warmup_steps=5, total_steps=None)
    short = lr_multiplier("cosine", warmup_steps=100, total_steps=2)
    assert short(0) == pytest.approx(0.01) and short(1) == pytest.approx(0.02)
    with pytest.raises(ValueError, match="unknown LR schedule"):
        lr_multiplier("step")


def test_save_safetensors_atomic(tmp_path):
    base = torch.arange(6.0)
    tensors = {"a": base[:3], "b": base.view(2, 3).T}  # shared storage, non-contiguous
    path = save_safetensors_atomic(tensors, tmp_path / "sub" / "w.safetensors", {"format": "x"})
    loaded = load_file(path)
    assert torch.equal(loaded["a"], base[:3]) and torch.equal(loaded["b"], base.view(2, 3).T)
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"format": "x"}
    assert [p.name for p in path.parent.iterdir()] == ["w.safetensors"]
    with pytest.raises(ValueError, match=".safetensors"):
        save_safetensors_atomic(tensors, tmp_path / "w.pt")
    with pytest.raises(ValueError, match="metadata"):
        save_safetensors_atomic(tensors, tmp_path / "w.safetensors", {"n": 1})
