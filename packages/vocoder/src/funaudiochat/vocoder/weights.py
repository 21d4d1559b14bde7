"""Strict state-dict checks for the vocoder's modules: a checkpoint that does not fit is never loaded in
part; every missing, unexpected and mis-shaped key is named in one ``ValueError``."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


def check_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise ``ValueError`` unless ``state_dict`` has exactly ``module``'s keys and shapes."""
    expected = module.state_dict()
    missing = sorted(k for k in expected if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in expected)
    misshaped = sorted(
        f"{k} (checkpoint {tuple(state_dict[k].shape)}, model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    )
    problems = [
        f"{what} keys: {', '.join(keys)}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
        if keys
    ]
    if problems:
        raise ValueError(f"{source} does not fit {type(module).__name__}; " + "; ".join(problems))
