"""Core-Cocktail merge: ``M = alpha * M1 + (1 - alpha) * M0`` over the shared LLM.

M0 is the original text LLM, M1 the model after Core-Cocktail stage 1 (full fine-tune at a high learning
rate). Every tensor of M1's ``language_model.`` is averaged with M0's; everything else (audio encoders, the
Speech Refined Head, ...) keeps M1's values ("new modules keep M1"). Stage 2 then fine-tunes M at a low
learning rate. The average is computed in float32 and stored in M1's dtype.

M0 may be a Fun-Audio-Chat checkpoint (keys ``language_model.*``) or a plain Hugging Face causal LM
(``model.*``, ``lm_head.weight``; a tied ``lm_head`` falls back to ``model.embed_tokens.weight``). When M1's
embedding matrices have more rows than M0's (tokens added for speech), the rows M0 has are averaged and
the new rows keep M1's values.

    >>> merged = merge_state_dicts(base_llm_state, tuned_state, alpha=0.5)        # in memory
    >>> merge_checkpoints("qwen3-0.6b/", "stage1/", "merged/", alpha=0.5)        # on disk (HF layout)

From the command line: ``funaudiochat-train merge --base M0 --tuned M1 --alpha 0.5 --out M``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

LLM_PREFIX = "language_model."
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"


@dataclass
class MergeReport:
    """What a merge did: tensors averaged, kept from M1, and embedding rows M0 did not have."""

    averaged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    extended_rows: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        text = f"{len(self.averaged)} LLM tensors averaged, {len(self.kept)} other tensors kept from M1"
        if self.extended_rows:
            rows = ", ".join(f"{k} (+{n} rows)" for k, n in sorted(self.extended_rows.items()))
            text += f"; rows only in M1 kept: {rows}"
        return text


def check_alpha(alpha: float) -> float:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1] (weight of the tuned model M1), got {alpha}")
    return float(alpha)


def base_key(key: str, base_keys: set[str] | Mapping, prefix: str = LLM_PREFIX) -> str | None:
    """The key of M0 that holds M1's ``key`` (an LLM tensor), or None when M0 has none."""
    candidates = [key, key[len(prefix) :]]
    if key.endswith("lm_head.weight"):  # tied output embedding
        candidates += [
            key.replace("lm_head.weight", "model.embed_tokens.weight"),
            key[len(prefix) :].replace("lm_head.weight", "model.embed_tokens.weight"),
        ]
    return next((k for k in candidates if k in base_keys), None)


def average(tuned: torch.Tensor, base: torch.Tensor, alpha: float, name: str) -> tuple[torch.Tensor, int]:
    """``alpha * tuned + (1 - alpha) * base`` in float32, cast to ``tuned``'s dtype; returns the result and
    the number of leading rows only ``tuned`` has (embeddings grown for new tokens)."""
    if tuned.shape[1:] != base.shape[1:] or tuned.ndim != base.ndim or tuned.shape[0] < base.shape[0]:
        raise ValueError(
            f"{name}: M1 has shape {list(tuned.shape)} but M0 has {list(base.shape)}; only M1 may have "
            "extra rows (added tokens)"
        )
    out = tuned.float().clone()
    rows = base.shape[0] if base.ndim else None
    mixed = alpha * out[:rows] + (1.0 - alpha) * base.float()
    if rows is None:
        out = mixed
    else:
        out[:rows] = mixed
    return out.to(tuned.dtype), (tuned.shape[0] - base.shape[0]) if tuned.ndim else 0


def merge_state_dicts(
    base: Mapping[str, torch.Tensor],
    tuned: Mapping[str, torch.Tensor],
    alpha: float = 0.5,
    prefix: str = LLM_PREFIX,
    report: MergeReport | None = None,
) -> dict[str, torch.Tensor]:
    """Merge in memory (see the module docstring). Every LLM tensor of ``tuned`` must exist in ``base``;
    otherwise a ``ValueError`` lists the missing ones."""
    alpha = check_alpha(alpha)
    report = report if report is not None else MergeReport()
    missing = [k for k in tuned if k.startswith(prefix) and base_key(k, base, prefix) is None]
    if missing:
        shown = ", ".join(missing[:10]) + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
        raise ValueError(f"M0 lacks {len(missing)} tensors of M1's shared LLM: {shown}")
    merged = {}
    for key, value in tuned.items():
        if not key.startswith(prefix):
            merged[key] = value
            report.kept.append(key)
            continue
        merged[key], extra = average(value, base[base_key(key, base, prefix)], alpha, key)
        report.averaged.append(key)
        if extra:
            report.extended_rows[key] = extra
    return merged


class Checkpoint:
    """The safetensors weights of a Hugging Face checkpoint directory (one file or an index of shards),
    read lazily, one tensor at a time."""

    def __init__(self, directory: str | os.PathLike, role: str):
        from safetensors import safe_open

        self.directory = Path(directory)
        index = self.directory / INDEX_NAME
        if (self.directory / WEIGHTS_NAME).is_file():
            self.shards = {WEIGHTS_NAME: None}
        elif index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            self.shards = {name: None for name in dict.fromkeys(weight_map.values())}
        else:
            raise ValueError(
                f"{role} {self.directory}: no {WEIGHTS_NAME} or {INDEX_NAME} (a Hugging Face checkpoint "
                "directory with safetensors weights is needed; .bin files are not read)"
            )
        self.files = {name: safe_open(str(self.directory / name), "pt") for name in self.shards}
        self.location = {key: name for name, f in self.files.items() for key in f.keys()}

    def keys(self):
        return self.location.keys()

    def __contains__(self, key: str) -> bool:
        return key in self.location

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.files[self.location[key]].get_tensor(key)

    def shard_keys(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {name: [] for name in self.files}
        for key, name in self.location.items():
            out[name].append(key)
        return out


def merge_checkpoints(
    base: str | os.PathLike,
    tuned: str | os.PathLike,
    out: str | os.PathLike,
    alpha: float = 0.5,
    prefix: str = LLM_PREFIX,
    progress: Callable[[str], None] | None = None,
) -> MergeReport:
    """Merge two checkpoint directories into ``out`` (same shards and files as M1: config, tokenizer, ...).

    One shard of M1 is in memory at a time. ``out`` must not exist; it is written in a temporary directory
    beside it and renamed when complete, so a failed merge leaves nothing behind."""
    from safetensors.torch import save_file

    alpha = check_alpha(alpha)
    out = Path(out)
    if out.exists():
        raise ValueError(f"{out} already exists; give a new directory for the merged model")
    base_ckpt, tuned_ckpt = Checkpoint(base, "--base"), Checkpoint(tuned, "--tuned")
    report = MergeReport()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for item in Path(tuned).iterdir():
            if item.suffix == ".safetensors" or item.name == INDEX_NAME or not item.is_file():
                continue
            shutil.copy2(item, staging / item.name)
        if (Path(tuned) / INDEX_NAME).is_file():
            shutil.copy2(Path(tuned) / INDEX_NAME, staging / INDEX_NAME)
        for shard, keys in tuned_ckpt.shard_keys().items():
            part = {key: tuned_ckpt[key] for key in keys}
            merged = merge_state_dicts(base_ckpt, part, alpha, prefix, report)
            save_file({k: v.contiguous() for k, v in merged.items()}, str(staging / shard), {"format": "pt"})
            if progress:
                progress(f"merged {shard}: {len(keys)} tensors")
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report
