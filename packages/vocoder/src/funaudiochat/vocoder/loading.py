"""Loading flow and HiFT weights with the sizes they were saved with.

The training stages export ``flow.safetensors`` / ``hift.safetensors`` with two metadata entries:
``format`` (``funaudiochat-vocoder-flow`` / ``funaudiochat-vocoder-hift``) and ``config`` (the
``FlowConfig`` / ``HiFTConfig`` fields as JSON; torch dtypes by name, e.g. ``"float64"``). ``load_flow`` and
``load_hift`` build the model from that config; a file without it (CosyVoice3 weights, ``flow.pt``) gets the
official size, and an explicit ``config`` argument always wins.

Example:
    >>> hift = load_hift("runs/hift/hift.safetensors")       # tiny if it was trained tiny
    >>> flow = load_flow("CosyVoice3/flow.pt")               # no metadata: the official size
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TypeVar

import torch
from funaudiochat.base.weights import read_config_metadata, read_safetensors, write_safetensors
from safetensors import safe_open

from .flow import CausalFlowMatching, FlowConfig
from .hift import HiFTConfig, HiFTGenerator

FLOW_WEIGHTS_FORMAT = "funaudiochat-vocoder-flow"
HIFT_WEIGHTS_FORMAT = "funaudiochat-vocoder-hift"

Config = TypeVar("Config")


def config_from_dict(cls: type[Config], values: dict, source: str) -> Config:
    """A ``cls`` dataclass from stored field values: missing fields keep their defaults, dtype fields take a
    torch dtype name; an unknown field or dtype name is a ``ValueError`` naming ``source``."""
    defaults = cls()
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"{source}: unknown {cls.__name__} fields {unknown} in the 'config' metadata")
    converted = {}
    for name, value in values.items():
        if isinstance(getattr(defaults, name), torch.dtype):
            dtype = getattr(torch, value, None) if isinstance(value, str) else None
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"{source}: {cls.__name__}.{name} must name a torch dtype, got {value!r}")
            value = dtype
        converted[name] = value
    return dataclasses.replace(defaults, **converted)


def stored_config(
    metadata: dict[str, str], cls: type[Config], weights_format: str, path: str | os.PathLike
) -> Config | None:
    """The ``cls`` config in a safetensors file's ``metadata`` (None when it has none); metadata whose
    ``format`` names other weights is a ``ValueError`` naming ``path``."""
    stored_format = metadata.get("format")
    if stored_format is not None and stored_format != weights_format:
        raise ValueError(f"{path}: holds {stored_format} weights, not {weights_format}")
    values = read_config_metadata(metadata, path)
    return None if values is None else config_from_dict(cls, values, str(path))


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a safetensors file, without reading its tensors; a missing or unreadable file is a
    ``ValueError`` naming it."""
    if not Path(path).is_file():
        raise ValueError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from err


def load_hift(path: str | os.PathLike, config: HiFTConfig | None = None) -> HiFTGenerator:
    """``HiFTGenerator`` from a safetensors file, in eval mode; its size is ``config``, else the config in the
    file's metadata, else the official size. Keys and shapes are checked strictly (``ValueError``)."""
    tensors, metadata = read_safetensors(path)
    config = config or stored_config(metadata, HiFTConfig, HIFT_WEIGHTS_FORMAT, path) or HiFTConfig()
    return HiFTGenerator.from_state_dict(tensors, config, source=str(path)).eval()


def load_flow(path: str | os.PathLike, config: FlowConfig | None = None) -> CausalFlowMatching:
    """``CausalFlowMatching`` from ``flow.safetensors`` or CosyVoice3's ``flow.pt``, in eval mode; its size is
    ``config``, else the config in a safetensors file's metadata, else the official size."""
    if config is None and Path(path).suffix == ".safetensors":
        config = stored_config(read_metadata(path), FlowConfig, FLOW_WEIGHTS_FORMAT, path)
    return CausalFlowMatching.from_pretrained(path, config)


def config_to_metadata(config) -> str:
    """A ``FlowConfig`` / ``HiFTConfig`` as the JSON of the ``config`` metadata (torch dtypes by name)."""
    values = {}
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        values[item.name] = str(value).removeprefix("torch.") if isinstance(value, torch.dtype) else value
    return json.dumps(values)


def save_flow(flow: CausalFlowMatching, path: str | os.PathLike) -> Path:
    """Write ``flow``'s weights with its format and config in the metadata (atomically), so that
    ``load_flow`` builds the same size."""
    metadata = {"format": FLOW_WEIGHTS_FORMAT, "config": config_to_metadata(flow.config)}
    return write_safetensors(path, flow.state_dict(), metadata=metadata)


def save_hift(hift: HiFTGenerator, path: str | os.PathLike) -> Path:
    """Write ``hift``'s weights with its format and config in the metadata (atomically); see ``save_flow``."""
    metadata = {"format": HIFT_WEIGHTS_FORMAT, "config": config_to_metadata(hift.config)}
    return write_safetensors(path, hift.state_dict(), metadata=metadata)


def _count(state_dict: dict, prefix: str) -> int:
    """How many numbered children ``prefix.N.`` the keys of ``state_dict`` hold."""
    return len({k[len(prefix) :].split(".")[0] for k in state_dict if k.startswith(prefix)})


def _kernel(state_dict: dict, name: str) -> torch.Tensor:
    """A convolution's weight by layer name, weight-normed (``parametrizations.weight.original1``) or not."""
    for key in (f"{name}.parametrizations.weight.original1", f"{name}.weight"):
        if key in state_dict:
            return state_dict[key]
    raise ValueError(f"no weight for {name!r} in the state dict")


def flow_config_from_state_dict(state_dict: dict, source: str = "state dict") -> FlowConfig:
    """The ``FlowConfig`` whose shapes a CosyVoice3 ``flow`` state dict has (the settings that are not in
    the weights, e.g. the chunk size and solver, keep their defaults)."""
    try:
        vocab, width = state_dict["input_embedding.weight"].shape
        conv1 = state_dict["pre_lookahead_layer.conv1.weight"]
        est = "decoder.estimator."
        mel, dim = state_dict[est + "proj_out.weight"].shape
        dim_head = 2 * state_dict[est + "rotary_embed.inv_freq"].numel()
        inner = state_dict[est + "transformer_blocks.0.attn.to_q.weight"].shape[0]
        ff = state_dict[est + "transformer_blocks.0.ff.ff.0.0.weight"].shape[0]
        pos = state_dict[est + "input_embed.conv_pos_embed.conv1.0.weight"]
        spk = state_dict["spk_embed_affine_layer.weight"].shape[1]
    except KeyError as err:
        raise ValueError(f"{source}: no {err.args[0]!r}; not a CosyVoice3 flow state dict") from err
    return FlowConfig(
        vocab_size=vocab,
        input_size=width,
        output_size=mel,
        spk_embed_dim=spk,
        pre_lookahead_len=conv1.shape[2] - 1,
        pre_lookahead_channels=conv1.shape[0],
        dim=dim,
        depth=_count(state_dict, est + "transformer_blocks."),
        heads=inner // dim_head,
        dim_head=dim_head,
        ff_mult=ff // dim,
        conv_pos_kernel=pos.shape[2],
        conv_pos_groups=dim // pos.shape[1],
    )


def hift_config_from_state_dict(state_dict: dict, source: str = "state dict") -> HiFTConfig:
    """The ``HiFTConfig`` whose shapes a CosyVoice3 ``hift`` state dict has (``generator.`` prefix allowed;
    up-sampling rates and dilations, which the shapes do not show, keep their defaults)."""
    state_dict = {k.removeprefix("generator."): v for k, v in state_dict.items()}
    try:
        pre = _kernel(state_dict, "conv_pre")
        stages = _count(state_dict, "ups.")
        per_stage = _count(state_dict, "resblocks.") // max(stages, 1)
        return HiFTConfig(
            in_channels=pre.shape[1],
            base_channels=pre.shape[0],
            nb_harmonics=state_dict["m_source.l_linear.weight"].shape[1] - 1,
            upsample_kernel_sizes=[_kernel(state_dict, f"ups.{i}").shape[2] for i in range(stages)],
            istft_n_fft=_kernel(state_dict, "conv_post").shape[0] - 2,
            resblock_kernel_sizes=[
                _kernel(state_dict, f"resblocks.{j}.convs1.0").shape[2] for j in range(per_stage)
            ],
            source_resblock_kernel_sizes=[
                _kernel(state_dict, f"source_resblocks.{i}.convs1.0").shape[2] for i in range(stages)
            ],
            conv_pre_look_right=pre.shape[2] - 1,
            f0_cond_channels=_kernel(state_dict, "f0_predictor.condnet.0").shape[0],
        )
    except (KeyError, ValueError) as err:
        raise ValueError(f"{source}: not a CosyVoice3 hift state dict ({err})") from err
