"""``SimpleDataModule``: a Lightning data module over map-style datasets, for the stages whose data is one
item per file (tokenizer, vocoder).

A subclass builds ``train_set`` (and ``val_set``, or None) in ``setup`` and names its ``collate`` function
(a ``staticmethod``); the hyperparameters ``batch_size``, ``shuffle``, ``drop_last`` and ``num_workers``
(``save_hyperparameters``) shape both loaders: shuffling and dropping the last short batch apply to
training only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset


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
