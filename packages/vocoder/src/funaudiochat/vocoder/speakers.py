"""Speaker table: named voices for the vocoder, stored as safetensors.

A voice is a 192-d speaker embedding (CAM++ x-vector, as CosyVoice3 uses) and, optionally, a prompt: the
speech tokens ``[N]`` of a reference clip and its mel ``[T, 80]`` (voice cloning by a reference clip).

File layout (safetensors): ``<name>/embedding``, ``<name>/prompt_tokens``, ``<name>/prompt_mel`` and the
metadata key ``speakers`` (a JSON list of the names, in order). Official CosyVoice ``spk2info.pt`` files
convert with ``SpeakerTable.from_spk2info``, which reads them with ``torch.load(weights_only=True)`` and
accepts nothing but a mapping of names to tensors.

Example:
    >>> table = SpeakerTable.from_spk2info("new_spk2info.pt")   # official file, safely read
    >>> table.save("speakers.safetensors")
    >>> voice = SpeakerTable.load("speakers.safetensors")["中文女"]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from funaudiochat.base.atomic import atomic_save
from safetensors import safe_open
from safetensors.torch import save_file

EMBEDDING_DIM = 192
MEL_BINS = 80


@dataclass
class Speaker:
    """``embedding [192]`` float; optional ``prompt_tokens [N]`` long and ``prompt_mel [T, 80]`` float."""

    embedding: torch.Tensor
    prompt_tokens: torch.Tensor | None = None
    prompt_mel: torch.Tensor | None = None

    def validate(self, name: str) -> None:
        if self.embedding.shape != (EMBEDDING_DIM,):
            raise ValueError(
                f"speaker {name!r}: embedding must have shape ({EMBEDDING_DIM},), "
                f"got {tuple(self.embedding.shape)}"
            )
        if not torch.isfinite(self.embedding).all():
            raise ValueError(f"speaker {name!r}: embedding contains NaN or Inf")
        if (self.prompt_tokens is None) != (self.prompt_mel is None):
            raise ValueError(f"speaker {name!r}: give both prompt_tokens and prompt_mel, or neither")
        if self.prompt_tokens is not None:
            if self.prompt_tokens.ndim != 1:
                raise ValueError(
                    f"speaker {name!r}: prompt_tokens must be 1-D, got {tuple(self.prompt_tokens.shape)}"
                )
            if self.prompt_mel.ndim != 2 or self.prompt_mel.shape[1] != MEL_BINS:
                raise ValueError(
                    f"speaker {name!r}: prompt_mel must be [frames, {MEL_BINS}], "
                    f"got {tuple(self.prompt_mel.shape)}"
                )
            if not torch.isfinite(self.prompt_mel).all():
                raise ValueError(f"speaker {name!r}: prompt_mel contains NaN or Inf")


class SpeakerTable:
    """Named ``Speaker`` entries; ``table[name]`` raises a ``KeyError`` listing the known names."""

    def __init__(self, speakers: dict[str, Speaker] | None = None):
        self._speakers: dict[str, Speaker] = {}
        for name, speaker in (speakers or {}).items():
            self.add(name, speaker)

    def add(self, name: str, speaker: Speaker) -> None:
        if not name or "/" in name:
            raise ValueError(f"speaker name must be non-empty and contain no '/', got {name!r}")
        speaker.validate(name)
        self._speakers[name] = speaker

    def __getitem__(self, name: str) -> Speaker:
        if name not in self._speakers:
            known = ", ".join(repr(n) for n in self._speakers) or "none"
            raise KeyError(f"unknown speaker {name!r}; known speakers: {known}")
        return self._speakers[name]

    def __contains__(self, name: object) -> bool:
        return name in self._speakers

    def __iter__(self) -> Iterator[str]:
        return iter(self._speakers)

    def __len__(self) -> int:
        return len(self._speakers)

    @property
    def names(self) -> list[str]:
        return list(self._speakers)

    # ---- files ------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the table atomically (temp file, then rename)."""
        tensors = {}
        for name, s in self._speakers.items():
            tensors[f"{name}/embedding"] = s.embedding.float().contiguous()
            if s.prompt_tokens is not None:
                tensors[f"{name}/prompt_tokens"] = s.prompt_tokens.long().contiguous()
                tensors[f"{name}/prompt_mel"] = s.prompt_mel.float().contiguous()
        metadata = {"speakers": json.dumps(self.names, ensure_ascii=False)}
        atomic_save(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))

    @classmethod
    def load(cls, path: str | os.PathLike) -> SpeakerTable:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: speaker table not found")
        try:
            with safe_open(str(path), framework="pt") as f:
                names = json.loads((f.metadata() or {}).get("speakers", "null"))
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as err:
            raise ValueError(f"{path}: not a readable safetensors speaker table ({err})") from err
        if not isinstance(names, list):
            raise ValueError(f"{path}: no 'speakers' list in the metadata; not a speaker table")
        table = cls()
        for name in names:
            if f"{name}/embedding" not in tensors:
                raise ValueError(f"{path}: speaker {name!r} has no embedding")
            table.add(
                name,
                Speaker(
                    tensors[f"{name}/embedding"],
                    tensors.get(f"{name}/prompt_tokens"),
                    tensors.get(f"{name}/prompt_mel"),
                ),
            )
        return table

    @classmethod
    def from_spk2info(cls, path: str | os.PathLike) -> SpeakerTable:
        """Convert CosyVoice's ``spk2info.pt`` (``{name: {"embedding": [1,192], "speech_token": [1,N],
        "speech_feat": [1,T,80]}}``). It is read with ``torch.load(weights_only=True)``: a file holding
        anything but tensors, dicts and strings is refused, never unpickled."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: spk2info file not found")
        try:
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(
                f"{path}: refused: not a tensors-only torch file ({type(err).__name__}: "
                f"{str(err).splitlines()[0]})"
            ) from err
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping of speaker names, got {type(raw).__name__}")
        table = cls()
        for name, info in raw.items():
            if not isinstance(info, dict) or not isinstance(info.get("embedding"), torch.Tensor):
                raise ValueError(f"{path}: speaker {name!r} has no 'embedding' tensor")
            tokens, mel = info.get("speech_token"), info.get("speech_feat")
            has_prompt = isinstance(tokens, torch.Tensor) and tokens.numel() > 0
            table.add(
                str(name),
                Speaker(
                    embedding=info["embedding"].reshape(-1).float(),
                    prompt_tokens=tokens.reshape(-1).long() if has_prompt else None,
                    prompt_mel=mel.reshape(-1, MEL_BINS).float() if has_prompt else None,
                ),
            )
        return table
