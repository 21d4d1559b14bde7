"""Duration-bucketed batch sampler: similar lengths together, bounded seconds per batch, DDP and resume safe.

Each epoch (a pure function of ``seed``, ``epoch`` and the durations):

1. examples are sorted by duration (seconds; for conversations: user audio + assistant speech), or by
   ``sort_by`` when given (e.g. token counts: what a padded batch costs), and cut into ``num_buckets``
   buckets of (nearly) equal count;
2. each bucket is shuffled and packed greedily into batches: an example joins the open batch while the
   batch's total stays within ``max_seconds`` and its size within ``max_batch_size``; an example longer
   than ``max_seconds`` on its own becomes a batch of one;
3. the batches of all buckets are shuffled together;
4. with ``num_replicas`` R > 1 the batch count is made a multiple of R by halving the largest batches
   (limits still hold), and rank r takes batches ``r, r + R, r + 2R, ...``: every rank gets the same
   number of batches, no example is on two ranks, and every example is used once per epoch. Only when
   there are too few examples to split (fewer examples than the rounded-up batch count) are the last
   ``len % R`` batches dropped, with a warning.

``state_dict`` / ``load_state_dict`` save and restore the position inside an epoch, so an interrupted run
resumes with exactly the batches it had not consumed. With ``shuffle=False`` steps 2 and 3 keep the sorted
order (batches from short to long).

Example:
    >>> sampler = DurationBucketSampler(dataset.durations, max_seconds=120, max_batch_size=16, seed=0,
    ...                                 num_replicas=world_size, rank=rank)
    >>> loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collator)
    >>> sampler.set_epoch(epoch)
    >>> state = sampler.state_dict(consumed=batches_done)   # then: sampler.load_state_dict(state)
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler


class DurationBucketSampler(Sampler[list[int]]):
    """Yields lists of dataset indices (this rank's batches of the current epoch).

    Args:
        durations: seconds per example (``>= 0``, finite).
        sort_by: one number per example that orders the buckets instead of the durations (None: the
            durations), e.g. tokens per example, so a batch pads to a similar length; ``max_seconds``
            still bounds the durations.
        max_seconds: most total seconds in a batch (None: no limit).
        max_batch_size: most examples in a batch (None: no limit). At least one limit is required.
        num_buckets: duration buckets (1: no bucketing, only packing).
        shuffle: shuffle within buckets and the batch order (seeded).
        seed: base seed; the epoch's order depends only on (seed, epoch).
        num_replicas, rank: data-parallel world size and this process's rank; default from
            ``torch.distributed`` when it is initialized, else 1 and 0.
    """

    def __init__(
        self,
        durations: Sequence[float],
        *,
        max_seconds: float | None = None,
        max_batch_size: int | None = None,
        num_buckets: int = 10,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        sort_by: Sequence[float] | None = None,
    ):
        self.durations = np.asarray(durations, dtype=np.float64).reshape(-1)
        if self.durations.size and (not np.isfinite(self.durations).all() or (self.durations < 0).any()):
            raise ValueError("durations must be finite and >= 0 (seconds)")
        self.sort_by = self.durations
        if sort_by is not None:
            self.sort_by = np.asarray(sort_by, dtype=np.float64).reshape(-1)
        if self.sort_by.shape != self.durations.shape or not np.isfinite(self.sort_by).all():
            raise ValueError(
                f"sort_by must hold one finite number per example ({self.durations.size}), "
                f"got {self.sort_by.size} values"
            )
        if max_seconds is None and max_batch_size is None:
            raise ValueError(
                "give max_seconds and/or max_batch_size; with neither a batch would be everything"
            )
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if num_buckets < 1:
            raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
        if num_replicas is None or rank is None:
            world, me = _distributed_world()
            num_replicas = world if num_replicas is None else num_replicas
            rank = me if rank is None else rank
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(
                f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas}, {rank}"
            )
        if 0 < self.durations.size < num_replicas:
            raise ValueError(
                f"{self.durations.size} examples cannot give every one of {num_replicas} ranks a batch"
            )
        self.max_seconds = max_seconds
        self.max_batch_size = max_batch_size
        self.num_buckets = num_buckets
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self._position = 0  # batches of this epoch already yielded (or restored as consumed)
        self._resume: int | None = None
        self._plans: dict[int, list[list[int]]] = {}

    # ------------------------------------------------------------------------------------------ plan

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order ``__iter__`` yields (Lightning calls it every epoch)."""
        if epoch != self.epoch:
            self.epoch = int(epoch)
            self._resume = None

    def epoch_batches(self, epoch: int | None = None) -> list[list[int]]:
        """All ranks' batches of ``epoch`` (default: the current one), before the split over ranks."""
        epoch = self.epoch if epoch is None else int(epoch)
        plan = self._plans.get(epoch)
        if plan is None:
            plan = self._plan(epoch)
            self._plans = {epoch: plan}  # keep one epoch
        return plan

    def rank_batches(self, epoch: int | None = None) -> list[list[int]]:
        """This rank's batches of ``epoch``."""
        return self.epoch_batches(epoch)[self.rank :: self.num_replicas]

    def _plan(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        order = np.argsort(self.sort_by, kind="stable")
        buckets = [b for b in np.array_split(order, min(self.num_buckets, max(1, order.size))) if b.size]
        batches: list[list[int]] = []
        for bucket in buckets:
            members = rng.permutation(bucket) if self.shuffle else bucket
            batches += self._pack(members)
        if self.shuffle and batches:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return self._balance(batches)

    def _pack(self, indices: np.ndarray) -> list[list[int]]:
        limit_s = self.max_seconds if self.max_seconds is not None else float("inf")
        limit_n = self.max_batch_size if self.max_batch_size is not None else len(indices) + 1
        batches, current, total = [], [], 0.0
        for index in indices.tolist():
            seconds = float(self.durations[index])
            if current and (total + seconds > limit_s or len(current) >= limit_n):
                batches.append(current)
                current, total = [], 0.0
            current.append(index)
            total += seconds
        if current:
            batches.append(current)
        return batches

    def _balance(self, batches: list[list[int]]) -> list[list[int]]:
        r = self.num_replicas
        if r == 1 or len(batches) % r == 0:
            return batches
        while len(batches) % r:
            sizes = [len(b) for b in batches]
            largest = int(np.argmax(sizes))
            if sizes[largest] < 2:
                surplus = len(batches) % r
                warnings.warn(
                    f"DurationBucketSampler: {len(batches)} single-example batches cannot be shared evenly "
                    f"by {r} ranks; dropping the last {surplus} this epoch",
                    stacklevel=3,
                )
                return batches[: len(batches) - surplus]
            batch = batches[largest]
            half = len(batch) // 2
            batches[largest : largest + 1] = [batch[:half], batch[half:]]
        return batches

    # ------------------------------------------------------------------------------------- iteration

    def __iter__(self) -> Iterator[list[int]]:
        mine = self.rank_batches()
        start = self._resume if self._resume is not None else 0
        self._resume = None
        self._position = start
        for batch in mine[start:]:
            self._position += 1
            yield list(batch)

    def __len__(self) -> int:
        """Batches this rank yields in a whole epoch."""
        return len(self.rank_batches())

    # ---------------------------------------------------------------------------------------- resume

    def fingerprint(self) -> str:
        """Hash of the durations, the sort keys and every setting that shapes the batches."""
        digest = hashlib.sha256(self.durations.tobytes())
        if self.sort_by is not self.durations:
            digest.update(self.sort_by.tobytes())
        settings = (self.max_seconds, self.max_batch_size, self.num_buckets, self.shuffle, self.seed)
        digest.update(repr((settings, self.num_replicas, self.rank)).encode())
        return digest.hexdigest()

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """The position to resume from: ``epoch`` and the batches of it already consumed.

        ``consumed`` defaults to the batches ``__iter__`` has yielded; pass the count the training loop
        has actually used when a DataLoader prefetches ahead of it.
        """
        position = self._position if consumed is None else int(consumed)
        return {"epoch": self.epoch, "position": position, "fingerprint": self.fingerprint()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next ``__iter__`` yields the batches of ``state["epoch"]`` after ``position``.

        Raises:
            ValueError: the state was saved by a sampler over other durations or with other settings.
        """
        if state.get("fingerprint") != self.fingerprint():
            raise ValueError(
                "sampler state was saved for other durations or settings (seed, limits, buckets, ranks); "
                "it cannot resume this one"
            )
        self.epoch = int(state["epoch"])
        position = int(state["position"])
        if not 0 <= position <= len(self.rank_batches()):
            raise ValueError(f"position {position} is outside epoch {self.epoch} of {len(self)} batches")
        self._resume = position
        self._position = position


def _distributed_world() -> tuple[int, int]:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
    except (ImportError, RuntimeError):
        pass
    return 1, 0
