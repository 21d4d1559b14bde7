"""The losses of the dual-resolution model: token-mean cross entropy and per-row sequence log-probs."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sequence_log_prob(logits: torch.Tensor, targets: torch.Tensor, ignore: int) -> torch.Tensor:
    """Per-row sum of the log-probabilities of the non-ignored ``targets [B, L]`` under ``logits [B, L, V]``
    (fp32) -> ``[B]`` (0 for a row without targets)."""
    keep = targets != ignore
    logp = torch.log_softmax(logits.float(), dim=-1)
    picked = logp.gather(-1, targets.masked_fill(~keep, 0).unsqueeze(-1)).squeeze(-1)
    return (picked * keep).sum(dim=-1)


def mean_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore: int) -> torch.Tensor:
    """Token-mean cross entropy over non-ignored targets (fp32); 0, still in the graph, when there are none
    (the official loss is NaN then, e.g. for a batch without speech targets)."""
    if not bool((targets != ignore).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=ignore)
