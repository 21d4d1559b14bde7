"""Data-parallel runs: the training samplers split the data over ranks themselves.

``DurationBucketSampler`` and ``TaskMixture`` give rank r its own share of every epoch. Lightning's
distributed sampler, left on, would split that share again: each rank would see 1/R of it and an epoch
would train on 1/R of the data, silently. Recipes therefore set ``trainer.use_distributed_sampler: false``,
and a data module calls ``check_own_rank_split`` to refuse a run that does not.
"""

from __future__ import annotations

from typing import Any

from ..errors import UserInputError


def check_own_rank_split(trainer: Any) -> None:
    """Raise ``UserInputError`` when ``trainer`` runs on several ranks with Lightning's distributed sampler
    on (``use_distributed_sampler``); a single process, or no trainer, is always fine."""
    if trainer is None or trainer.world_size <= 1:
        return
    if getattr(trainer._accelerator_connector, "use_distributed_sampler", False):
        raise UserInputError(
            f"trainer.use_distributed_sampler must be false on {trainer.world_size} ranks: this stage's "
            "sampler gives each rank its own share of the data, and Lightning's would split it again "
            "(each rank would train on a fraction of its share); set trainer.use_distributed_sampler=false"
        )
