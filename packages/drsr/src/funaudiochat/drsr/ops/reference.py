"""Pure-PyTorch references of the fused ops: the specification the kernels in ``csrc/`` must match.

Each function here is differentiable with ordinary autograd and runs on any device. They avoid the big
intermediates too (``group`` never builds ``[B, T, D]``), so they are a usable fallback, only slower.
Argument checking lives in :mod:`funaudiochat.drsr.ops.checks` (``validate_*``); these functions assume valid
input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def group(
    ids: torch.Tensor, table: torch.Tensor, group_size: int, text: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of each run of ``group_size`` token embeddings, optionally averaged with ``text``.

    ids: int64 ``[B, T]``, ``T = G * group_size``; table: ``[V, D]``; text: ``[B, G, D]`` (table's dtype)
    or None.
    Returns ``[B, G, D]`` in the table's dtype: ``mean_j table[ids[b, g*k + j]]`` summed in fp32 in the order
    ``j = 0 .. k-1`` then divided by ``k``; with text, ``(text + mean) / 2`` in fp32, rounded once.
    """
    acc = F.embedding(ids[:, 0::group_size], table).float()
    for j in range(1, group_size):
        acc = acc + F.embedding(ids[:, j::group_size], table).float()
    out = acc / group_size
    if text is not None:
        out = (text.float() + out) / 2
    return out.to(table.dtype)


def ungroup(u: torch.Tensor, prev_ids: torch.Tensor, table: torch.Tensor, group_size: int) -> torch.Tensor:
    """Split each ``k*D`` row of ``u`` into ``k`` rows of ``D`` and add the embedding of ``prev_ids``.

    u: ``[B, L, k*D]``; prev_ids: int64 ``[B, L*k]``; table: ``[V, D]`` (u's dtype).
    Returns ``[B, L*k, D]``: ``out[b, p*k + j] = u[b, p, j*D:(j+1)*D] + table[prev_ids[b, p*k + j]]``.
    """
    batch, length, width = u.shape
    return u.reshape(batch, length * group_size, width // group_size) + F.embedding(prev_ids, table)


def ungroup_(u: torch.Tensor, prev_ids: torch.Tensor, table: torch.Tensor, group_size: int) -> torch.Tensor:
    """:func:`ungroup` written into ``u``'s storage (``u`` contiguous); returns the ``[B, L*k, D]`` view of u.

    ``u[b, p, j*D + d] += table[prev_ids[b, p*k + j], d]``, each element rounded once as in :func:`ungroup`.
    """
    batch, length, width = u.shape
    return u.view(batch, length * group_size, width // group_size).add_(F.embedding(prev_ids, table))


def _repetition_mask(history: torch.Tensor, vocab: int) -> torch.Tensor:
    """``[B, V]`` bool: token ``v`` occurs among the valid (``>= 0``) entries of ``history[b]``."""
    batch = history.shape[0]
    slot = torch.where(history >= 0, history, torch.full_like(history, vocab))  # padding -> spare column
    mask = torch.zeros(batch, vocab + 1, dtype=torch.bool, device=history.device)
    mask.scatter_(1, slot, True)
    return mask[:, :vocab]


def _inverse_cdf(weights: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Smallest ``i`` with ``cumsum(weights)[i] > uniform * sum``, clamped to the last positive weight.

    weights: fp64 ``[B, V]`` (>= 0, at least one > 0 per row); uniform: fp64 ``[B]``. The cumulative sum runs
    sequentially in vocabulary order and its last element is the total.
    """
    vocab = weights.shape[1]
    cumulative = torch.cumsum(weights, dim=1)
    target = uniform * cumulative[:, -1]
    index = (cumulative <= target[:, None]).sum(dim=1)
    last_positive = vocab - 1 - torch.argmax(torch.flip(weights > 0, dims=[1]).to(torch.int8), dim=1)
    return torch.minimum(index, last_positive)


def _ras_repeats(history: torch.Tensor, token: torch.Tensor, window: int) -> torch.Tensor:
    """How often ``token[b]`` occurs among the last ``window`` valid entries of ``history[b]``."""
    valid = history >= 0
    rank_from_end = torch.flip(torch.cumsum(torch.flip(valid.to(torch.int64), dims=[1]), dim=1), dims=[1])
    in_window = valid & (rank_from_end <= window)
    return ((history == token[:, None]) & in_window).sum(dim=1)


def sample(
    logits: torch.Tensor,
    history: torch.Tensor,
    uniforms: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    ras_window: int = 0,
    ras_tau: float = 0.1,
) -> torch.Tensor:
    """Draw one token per row; the exact contract the fused kernels implement.

    logits: float ``[B, V]``; history: int64 ``[B, H]`` (``H >= 0``; entries ``< 0`` are padding, the others
    are ids ``< V``); uniforms: float ``[B, 2]`` in ``[0, 1)``. Returns int64 ``[B]``. Everything below is
    computed in fp64 on ``s = logits.double()``:

    a. Repetition penalty: for each distinct valid id ``h`` of ``history[b]``:
       ``s[h] = s[h] * penalty if s[h] < 0 else s[h] / penalty``.
    b. ``temperature <= 0``: return ``argmax(s)`` (ties: smallest index); RAS does not apply.
       Otherwise ``s = s / temperature``.
    c. Top-k (``0`` or ``>= V``: off): keep ``i`` iff ``s[i] >= `` the k-th largest ``s`` (duplicates counted,
       ties at the threshold kept).
    d. Top-p (``1.0``: off): with ``m = max(s)`` and ``w[i] = exp(s[i] - m)`` over the kept tokens,
       ``Z = sum w``, keep ``i`` iff ``sum(w[j] for kept j with s[j] > s[i]) < top_p * Z``. Ties are all kept
       or all dropped; the top token is always kept.
    e. Draw: ``w[i] = exp(s[i] - m)`` for kept ``i``, else 0; return the smallest ``i`` whose running sum
       (vocabulary order) exceeds ``uniforms[b, 0] * total``, clamped to the last ``i`` with ``w[i] > 0``.
    f. RAS (``ras_window > 0``): if the drawn token occurs ``>= ras_window * ras_tau`` times among the last
       ``ras_window`` valid history entries, redraw as in e. over all tokens (``w = exp(s - m)``, no top-k or
       top-p) with ``uniforms[b, 1]``.

    Rows need at least one finite logit; NaN or ``+inf`` logits give an unspecified token. The kernels sum in
    other orders (and the CUDA ``exp`` rounds differently), so a draw whose target lies within a few ulp of a
    running-sum boundary, or a top-p mass within a few ulp of ``top_p * Z``, may differ; see ``ops`` docs.
    """
    scores = logits.double()
    vocab = scores.shape[1]
    if repetition_penalty != 1.0 and history.shape[1] > 0:
        seen = _repetition_mask(history, vocab)
        penalised = torch.where(scores < 0, scores * repetition_penalty, scores / repetition_penalty)
        scores = torch.where(seen, penalised, scores)
    if temperature <= 0:
        return torch.argmax(scores, dim=1)
    scores = scores / temperature
    keep = torch.ones_like(scores, dtype=torch.bool)
    if 0 < top_k < vocab:
        kth = torch.topk(scores, top_k, dim=1).values[:, -1:]
        keep = scores >= kth
    top = scores.max(dim=1, keepdim=True).values
    weights = torch.exp(scores - top)
    if top_p < 1.0:
        keep = keep & _nucleus(scores, torch.where(keep, weights, 0.0), keep, top_p)
    token = _inverse_cdf(torch.where(keep, weights, 0.0), uniforms[:, 0].double())
    if ras_window > 0 and history.shape[1] > 0:
        repeats = _ras_repeats(history, token, ras_window)
        redraw = repeats.double() >= float(ras_window) * ras_tau
        if bool(redraw.any()):
            token = torch.where(redraw, _inverse_cdf(weights, uniforms[:, 1].double()), token)
    return token


def _nucleus(
    scores: torch.Tensor, weights: torch.Tensor, candidates: torch.Tensor, top_p: float
) -> torch.Tensor:
    """Step d.: ``[B, V]`` bool, token kept iff the mass of candidates scoring strictly higher is
    ``< top_p * Z``. Sort-based (the kernels use a threshold search instead)."""
    ranked = torch.where(candidates, scores, -torch.inf)
    sorted_scores, order = torch.sort(ranked, dim=1, descending=True, stable=True)
    sorted_weights = torch.gather(weights, 1, order)
    cumulative = torch.cumsum(sorted_weights, dim=1)
    before = torch.cat([torch.zeros_like(cumulative[:, :1]), cumulative[:, :-1]], dim=1)
    positions = torch.arange(scores.shape[1], device=scores.device).expand_as(before)
    starts_tie = torch.ones_like(candidates)
    starts_tie[:, 1:] = sorted_scores[:, 1:] != sorted_scores[:, :-1]
    tie_start = torch.cummax(torch.where(starts_tie, positions, 0), dim=1).values
    mass_above = torch.gather(before, 1, tie_start)
    kept_sorted = mass_above < top_p * cumulative[:, -1:]
    return torch.zeros_like(candidates).scatter(1, order, kept_sorted)
