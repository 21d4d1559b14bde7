"""Lightning data modules shared by the stages.

``SimpleDataModule``: over map-style datasets, for the stages whose data is one item per file (tokenizer,
vocoder).

A subclass builds ``train_set`` (and ``val_set``, or None) in ``setup`` and names its ``collate`` function
(a ``staticmethod``); the hyperparameters ``batch_size``, ``shuffle``, ``drop_last`` and ``num_workers``
(``save_hyperparameters``) shape both loaders: shuffling and dropping the last short batch apply to
training only.

``BucketedDataModule``: batches from a bucketing batch sampler (``data.DurationBucketSampler``: similar
lengths together, split over ranks by the sampler itself), whose position is part of Lightning's checkpoint,
so a run resumed mid-epoch continues with the batches it had not seen (the speech-LLM and text-LLM stages).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset

from .data.ranks import check_own_rank_split


class SimpleDataModule(L.LightningDataModule):
    """Train and validation loaders over ``train_set`` / ``val_set`` (see the module docstring)."""

    collate: Callable[[list[Any]], Any]
    train_set: Dataset | None = None
    val_set: Dataset | None = None

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        h = self.hparams
        return DataLoader(
            dataset,
            batch_size=h.batch_size,
            shuffle=h.shuffle and train,
            drop_last=h.drop_last and train,
            num_workers=h.num_workers,
            collate_fn=self.collate,
            persistent_workers=h.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader | list:
        if self.train_set is None:
            self.setup("validate")
        return self._loader(self.val_set, False) if self.val_set is not None else []


class BucketedDataModule(L.LightningDataModule):
    """Loaders over ``train_set`` / ``val_set`` (or None) with batches from ``_sampler(dataset, shuffle)``;
    subclasses build the sets and ``collate`` in ``setup``, call ``super().__init__()`` and have a
    ``num_workers`` hyperparameter. The training sampler's position is saved and restored with checkpoints."""

    # set by the subclass in ``setup``
    collate: Callable[[list[Any]], Any]
    train_set: Dataset
    val_set: Dataset | None

    def __init__(self) -> None:
        super().__init__()
        self.sampler: Any = None  # the training sampler, made by the first train_dataloader
        self._resume: dict[str, Any] | None = None  # a checkpoint's sampler state not yet applied

    def _sampler(self, dataset: Dataset, shuffle: bool) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define _sampler(dataset, shuffle)")

    def train_dataloader(self) -> DataLoader:
        check_own_rank_split(self.trainer)
        if self.sampler is None:  # Lightning sets its epoch (set_epoch) at every epoch start
            self.sampler = self._sampler(self.train_set, shuffle=True)
        if self._resume is not None:
            self.sampler.load_state_dict(self._resume)
            self._resume = None
        return DataLoader(
            self.train_set,
            batch_sampler=self.sampler,
            collate_fn=self.collate,
            num_workers=self.hparams.num_workers,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return DataLoader(
            self.val_set,
            batch_sampler=self._sampler(self.val_set, shuffle=False),
            collate_fn=self.collate,
            num_workers=self.hparams.num_workers,
        )

    def state_dict(self) -> dict[str, Any]:
        if self.sampler is None or self.trainer is None:
            return {}
        # batches the loop has trained on (a checkpoint taken in on_train_batch_end counts the current one)
        consumed = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"sampler": self.sampler.state_dict(consumed=consumed)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume = state_dict.get("sampler")
        if self._resume is not None and self.sampler is not None:
            self.sampler.load_state_dict(self._resume)
            self._resume = None
