"""load_flow / load_hift: the sizes come from the file's metadata, else an explicit config, else official."""

import dataclasses
import json

import pytest
import torch
from funaudiochat.vocoder import CausalFlowMatching, FlowConfig, HiFTConfig, HiFTGenerator
from funaudiochat.vocoder.loading import (
    FLOW_WEIGHTS_FORMAT,
    HIFT_WEIGHTS_FORMAT,
    config_from_dict,
    load_flow,
    load_hift,
)
from safetensors.torch import save_file


def plain(config) -> dict:
    """A config as the training export stores it: JSON values, torch dtypes by name."""
    values = dataclasses.asdict(config)
    return {k: str(v).removeprefix("torch.") if isinstance(v, torch.dtype) else v for k, v in values.items()}


def save(path, model, metadata=None):
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=metadata)
    return path


@pytest.fixture(scope="module")
def tiny_hift():
    torch.manual_seed(0)
    return HiFTGenerator(HiFTConfig.tiny()).eval()


def test_hift_size_from_the_metadata(tmp_path, tiny_hift):
    meta = {"format": HIFT_WEIGHTS_FORMAT, "config": json.dumps(plain(tiny_hift.config))}
    loaded = load_hift(save(tmp_path / "hift.safetensors", tiny_hift, meta))
    assert loaded.config == HiFTConfig.tiny() and loaded.config.f0_dtype is torch.float64
    assert not loaded.training
    for name, value in tiny_hift.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_hift_without_metadata_is_the_official_size_unless_told(tmp_path, tiny_hift):
    path = save(tmp_path / "bare.safetensors", tiny_hift)
    with pytest.raises(ValueError, match="checkpoint does not fit HiFTGenerator"):
        load_hift(path)  # the official size
    assert load_hift(path, HiFTConfig.tiny()).config == HiFTConfig.tiny()


def test_flow_size_from_the_metadata(tmp_path):
    torch.manual_seed(0)
    flow = CausalFlowMatching(FlowConfig.tiny())
    meta = {"format": FLOW_WEIGHTS_FORMAT, "config": json.dumps(plain(flow.config))}
    path = save(tmp_path / "flow.safetensors", flow, meta)
    assert load_flow(path).config == FlowConfig.tiny()
    with pytest.raises(ValueError, match=f"holds {FLOW_WEIGHTS_FORMAT} weights, not {HIFT_WEIGHTS_FORMAT}"):
        load_hift(path)


def test_bad_config_metadata_is_named(tmp_path, tiny_hift):
    with pytest.raises(ValueError, match=r"x.safetensors: unknown HiFTConfig fields \['depth'\]"):
        config_from_dict(HiFTConfig, {"depth": 2}, "x.safetensors")
    with pytest.raises(ValueError, match=r"HiFTConfig.f0_dtype must name a torch dtype, got 'float77'"):
        config_from_dict(HiFTConfig, {"f0_dtype": "float77"}, "x.safetensors")
    path = save(tmp_path / "hift.safetensors", tiny_hift, {"config": "{not json"})
    with pytest.raises(ValueError, match="'config' metadata is not JSON"):
        load_hift(path)
    with pytest.raises(ValueError, match="weights file not found"):
        load_flow(tmp_path / "missing.safetensors")
