"""Preference data for multi-task DPO: pairs of spoken answers to one prompt, grouped into named tasks.

File format (JSONL, one pair per line): ``{"task": NAME, "chosen": RECORD, "rejected": RECORD}`` where each
RECORD is one official sharegpt object (``system``, ``messages``, ``audio``; reference §7). Both records
must hold the same prompt (every turn and audio before the final assistant turn) and end with an
assistant turn. Every problem of the file is reported at once, as ``file:line: field: what (allowed)``.

Tasks are mixed by weight: ``TaskMixture`` draws each epoch's pairs task by task in proportion to
``mixture`` (e.g. ``{empathy: 2, robustness: 1}``), cycling through each task's pairs in a seeded order,
so a small task is repeated rather than drowned. The DPO loss has its own per-task weights
(``MultiTaskDPOModule.task_weights``). ``group_size`` (25 Hz frames per ``<|AUDIO|>`` slot; None: the
processor folder's) is as for ``SpokenChatDataModule`` and must equal the model's.

Example:
    >>> pairs = read_preferences("prefs.jsonl")
    >>> data = PreferenceDataModule(train="prefs.jsonl", processor="model/", mixture={"empathy": 2.0})
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data import Collator, Conversation, ConversationEncoder, UserAudio
from ..data.errors import ProblemLog
from ..data.jsonl import parse_json_object, read_lines
from ..data.ranks import check_own_rank_split
from ..data.sharegpt import _run_audio_checks, parse_sharegpt_record
from .data import check_group_size, load_processor


@dataclass
class PreferencePair:
    """One prompt answered twice; ``chosen`` is preferred to ``rejected``."""

    task: str
    chosen: Conversation
    rejected: Conversation
    source: str = ""


def _prompt(conv: Conversation) -> tuple:
    """Everything before the final assistant turn (turn texts and user audio paths)."""
    turns = [(t.role, t.content) for t in conv.turns[:-1]]
    user_audio = [a.path for a in conv.audios if isinstance(a, UserAudio)]
    return conv.system, tuple(turns), tuple(user_audio)


def read_preferences(path: str | os.PathLike, check_audio: bool = True) -> list[PreferencePair]:
    """Read and validate a preference JSONL file (see the module docstring)."""
    file = Path(path)
    log = ProblemLog(str(file))
    checks: list = []
    pairs = []
    for number, text in read_lines(file, log):
        obj = parse_json_object(text, number, log)
        if obj is None:
            continue
        task = obj.get("task")
        if not isinstance(task, str) or not task:
            log.add(number, "task", f"{task!r}", "a non-empty task name, e.g. empathy or robustness")
        sides = {}
        for side in ("chosen", "rejected"):
            if side not in obj:
                log.add(number, side, "missing", "an official sharegpt record (system, messages, audio)")
                continue
            conv = parse_sharegpt_record(
                obj[side],
                source=f"{file}:{number}:{side}",
                line=number,
                log=log,
                audio_root=file.parent,
                checks=checks,
            )
            if conv is not None:
                if not conv.turns or conv.turns[-1].role != "assistant":
                    log.add(
                        number,
                        f"{side}.messages",
                        "does not end with an assistant turn",
                        "prompt, then answer",
                    )
                else:
                    sides[side] = conv
        if len(sides) == 2:
            if _prompt(sides["chosen"]) != _prompt(sides["rejected"]):
                log.add(
                    number, "rejected", "its prompt differs from chosen's", "the same prompt, other answer"
                )
            elif isinstance(task, str) and task:
                pairs.append(PreferencePair(task, sides["chosen"], sides["rejected"], f"{file}:{number}"))
    if check_audio:
        _run_audio_checks([c for c in checks if c.kind == "user"], log, None, 8)
    log.raise_if_any()
    return pairs


class TaskMixture(Sampler[int]):
    """Per epoch, ``num_samples`` pair indices drawn task by task in proportion to ``mixture``.

    ``tasks[i]`` is pair i's task; tasks missing from ``mixture`` get weight 1. Deterministic per
    ``(seed, epoch)``; with ``num_replicas > 1`` rank r takes every ``num_replicas``-th draw."""

    def __init__(
        self,
        tasks: Sequence[str],
        mixture: Mapping[str, float] | None = None,
        num_samples: int | None = None,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        self.tasks = list(tasks)
        if not self.tasks:
            raise ValueError("no preference pairs")
        names = sorted(set(self.tasks))
        mixture = dict(mixture or {})
        unknown = sorted(set(mixture) - set(names))
        if unknown:
            raise ValueError(f"mixture names tasks without pairs: {unknown}; the data has {names}")
        if any(not w > 0 for w in mixture.values()):
            raise ValueError(f"mixture weights must be > 0, got {mixture}")
        self.names = names
        self.weights = np.array([float(mixture.get(n, 1.0)) for n in names])
        self.members = {n: [i for i, t in enumerate(self.tasks) if t == n] for n in names}
        self.num_samples = num_samples or len(self.tasks)
        self.seed, self.epoch = seed, 0
        self.num_replicas, self.rank = num_replicas, rank

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def draws(self) -> list[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        picks = rng.choice(len(self.names), size=self.num_samples, p=self.weights / self.weights.sum())
        orders = {n: list(rng.permutation(self.members[n])) for n in self.names}
        used = dict.fromkeys(self.names, 0)
        out = []
        for k in picks:
            name = self.names[k]
            order = orders[name]
            out.append(int(order[used[name] % len(order)]))
            used[name] += 1
        return out

    def __iter__(self):
        return iter(self.draws()[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.num_replicas))


class PreferenceDataset(Dataset):
    """Pairs -> ``(task, encoded chosen, encoded rejected)``."""

    def __init__(self, pairs: Sequence[PreferencePair], encoder: ConversationEncoder):
        self.pairs = list(pairs)
        self.encoder = encoder

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        pair = self.pairs[index]
        return pair.task, self.encoder.encode(pair.chosen), self.encoder.encode(pair.rejected)


@dataclass
class PreferenceCollator:
    """A list of ``(task, chosen, rejected)`` -> ``{"chosen": batch, "rejected": batch, "task": [...]}``."""

    collate: Collator

    def __call__(self, items) -> dict[str, Any]:
        tasks, chosen, rejected = zip(*items, strict=True)
        return {
            "chosen": self.collate(list(chosen)),
            "rejected": self.collate(list(rejected)),
            "task": list(tasks),
        }


class PreferenceDataModule(L.LightningDataModule):
    """Preference pairs for ``MultiTaskDPOModule``: ``batch_size`` pairs per step, tasks mixed by
    ``mixture``, ``samples_per_epoch`` pairs per epoch (default: as many as the file holds)."""

    def __init__(
        self,
        train: str = "???",
        processor: str = "???",
        val: str | None = None,
        batch_size: int = 4,
        mixture: Mapping[str, float] | None = None,
        samples_per_epoch: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
        group_size: int | None = None,
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        check_group_size(group_size)
        self.save_hyperparameters()

    @property
    def group_size(self) -> int:
        """25 Hz speech frames per ``<|AUDIO|>`` slot of this data (``data.group_size``, else the
        processor folder's)."""
        if hasattr(self, "processor"):
            return self.processor.group_size
        h = self.hparams
        return h.group_size if h.group_size is not None else load_processor(h.processor).group_size

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_set"):
            return
        h = self.hparams
        self.processor = processor = load_processor(h.processor, h.group_size)
        encoder = ConversationEncoder(processor)
        self.collate = PreferenceCollator(Collator.for_processor(processor))
        for name in ("train", "val"):
            path = getattr(h, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"data.{name} {path}: preference file not found")
        self.train_set = PreferenceDataset(read_preferences(h.train), encoder)
        self.val_set = PreferenceDataset(read_preferences(h.val), encoder) if h.val else None

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        trainer = self.trainer
        check_own_rank_split(trainer)
        sampler = TaskMixture(
            [p.task for p in self.train_set.pairs],
            h.mixture,
            h.samples_per_epoch,
            h.seed,
            trainer.world_size if trainer is not None else 1,
            trainer.global_rank if trainer is not None else 0,
        )
        return DataLoader(
            self.train_set,
            batch_size=h.batch_size,
            sampler=sampler,
            collate_fn=self.collate,
            num_workers=h.num_workers,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, collate_fn=self.collate)


def write_preferences(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write ``{"task", "chosen", "rejected"}`` rows (sharegpt objects) as a preference JSONL file."""
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(dict(row), ensure_ascii=False) + "\n")


__all__ = [
    "PreferenceCollator",
    "PreferenceDataModule",
    "PreferenceDataset",
    "PreferencePair",
    "TaskMixture",
    "read_preferences",
    "write_preferences",
]
