"""DurationBucketSampler properties (hypothesis): coverage, limits, rank split, determinism, resume."""

from __future__ import annotations

import warnings

import pytest
from funaudiochat.training.data import DurationBucketSampler
from hypothesis import given, settings
from hypothesis import strategies as st


@st.composite
def setups(draw):
    durations = draw(st.lists(st.floats(0.1, 25.0, allow_nan=False), min_size=1, max_size=80))
    max_seconds = draw(st.one_of(st.none(), st.floats(5.0, 60.0)))
    max_batch_size = (
        draw(st.integers(1, 8)) if max_seconds is None else draw(st.one_of(st.none(), st.integers(1, 8)))
    )
    replicas = draw(st.integers(1, min(4, len(durations))))
    return {
        "durations": durations,
        "max_seconds": max_seconds,
        "max_batch_size": max_batch_size,
        "num_buckets": draw(st.integers(1, 6)),
        "shuffle": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
        "num_replicas": replicas,
    }, draw(st.integers(0, 5))


def per_rank(setup: dict, epoch: int) -> tuple[list[list[list[int]]], list]:
    batches = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for rank in range(setup["num_replicas"]):
            sampler = DurationBucketSampler(**setup, rank=rank)
            sampler.set_epoch(epoch)
            batches.append(list(sampler))
            assert len(sampler) == len(batches[-1])
    return batches, caught


@settings(max_examples=120, deadline=None)
@given(case=setups())
def test_every_example_once_within_limits_on_disjoint_equal_ranks(case):
    setup, epoch = case
    ranks, caught = per_rank(setup, epoch)
    durations = setup["durations"]
    used = [i for batches in ranks for batch in batches for i in batch]
    assert len(used) == len(set(used))  # disjoint across ranks and batches
    assert len({len(batches) for batches in ranks}) == 1  # equal batch count on every rank
    if caught:  # only single-example batches that cannot be shared evenly are dropped
        assert "cannot be shared evenly" in str(caught[0].message)
        assert len(durations) - len(used) < setup["num_replicas"]
    else:
        assert sorted(used) == list(range(len(durations)))
    for batches in ranks:
        for batch in batches:
            assert batch
            if setup["max_batch_size"] is not None:
                assert len(batch) <= setup["max_batch_size"]
            if setup["max_seconds"] is not None and len(batch) > 1:
                assert sum(durations[i] for i in batch) <= setup["max_seconds"] + 1e-9


@settings(max_examples=60, deadline=None)
@given(case=setups())
def test_deterministic_for_seed_and_epoch(case):
    setup, epoch = case
    first, _ = per_rank(setup, epoch)
    again, _ = per_rank(setup, epoch)
    assert first == again


@settings(max_examples=80, deadline=None)
@given(case=setups(), data=st.data())
def test_resume_mid_epoch_continues_identically(case, data):
    setup, epoch = case
    rank = data.draw(st.integers(0, setup["num_replicas"] - 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = DurationBucketSampler(**setup, rank=rank)
        reference.set_epoch(epoch)
        full = list(reference)
        consumed = data.draw(st.integers(0, len(full)))
        interrupted = DurationBucketSampler(**setup, rank=rank)
        interrupted.set_epoch(epoch)
        iterator = iter(interrupted)
        seen = [next(iterator) for _ in range(consumed)]
        state = interrupted.state_dict()
        resumed = DurationBucketSampler(**setup, rank=rank)
        resumed.load_state_dict(state)
        resumed.set_epoch(epoch)  # what Lightning does on restart: same epoch, position kept
        assert seen + list(resumed) == full
        assert list(resumed) == full  # the resume applies once; the next pass is the whole epoch


def test_buckets_group_similar_durations_and_epochs_differ():
    durations = [float(i % 50) + 0.5 for i in range(500)]
    sampler = DurationBucketSampler(durations, max_batch_size=10, num_buckets=10, seed=3)
    batches = list(sampler)
    spread = max(max(durations[i] for i in b) - min(durations[i] for i in b) for b in batches)
    assert spread <= 5.0  # a bucket spans a tenth of the 0.5..49.5 s range
    sampler.set_epoch(1)
    assert list(sampler) != batches


def test_sort_by_orders_the_buckets_and_durations_still_bound_a_batch():
    # equal durations, two lengths: bucketing by length keeps the 10 long examples out of the short batches
    lengths = [500.0 if i % 20 == 0 else 60.0 + i % 7 for i in range(200)]
    durations = [2.0] * 200
    by_length = DurationBucketSampler(durations, max_seconds=20, num_buckets=20, seed=1, sort_by=lengths)
    batches = list(by_length)
    assert sorted(i for b in batches for i in b) == list(range(200))
    assert all(len(b) <= 10 for b in batches)  # max_seconds=20 still bounds 2 s examples
    mixed = [b for b in batches if len({lengths[i] == 500.0 for i in b}) > 1]
    assert mixed == []
    by_seconds = DurationBucketSampler(durations, max_seconds=20, num_buckets=20, seed=1)
    assert any(len({lengths[i] == 500.0 for i in b}) > 1 for b in by_seconds)
    assert by_length.fingerprint() != by_seconds.fingerprint()
    with pytest.raises(ValueError, match="one finite number per example"):
        DurationBucketSampler(durations, max_seconds=20, sort_by=lengths[:-1])


def test_state_from_another_dataset_is_refused():
    a = DurationBucketSampler([1.0, 2.0, 3.0], max_batch_size=2)
    b = DurationBucketSampler([1.0, 2.0, 4.0], max_batch_size=2)
    with pytest.raises(ValueError, match="saved for other durations or settings"):
        b.load_state_dict(a.state_dict())
    state = a.state_dict(consumed=1)
    assert state["position"] == 1 and state["epoch"] == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_seconds and/or max_batch_size"):
        DurationBucketSampler([1.0])
    with pytest.raises(ValueError, match="cannot give every one of 3 ranks a batch"):
        DurationBucketSampler([1.0, 2.0], max_batch_size=1, num_replicas=3, rank=0)
    with pytest.raises(ValueError, match="finite and >= 0"):
        DurationBucketSampler([1.0, float("nan")], max_batch_size=1)


def test_batches_are_split_so_ranks_get_equal_counts():
    durations = [1.0] * 7
    ranks = [
        list(DurationBucketSampler(durations, max_batch_size=2, num_buckets=1, num_replicas=3, rank=r))
        for r in range(3)
    ]
    assert [len(r) for r in ranks] == [2, 2, 2]  # 4 packed batches, split into 6
    assert sorted(i for r in ranks for b in r for i in b) == list(range(7))


def test_unsplittable_surplus_is_dropped_with_a_warning():
    durations = [10.0] * 5  # each alone over max_seconds: five batches of one
    with pytest.warns(UserWarning, match="dropping the last 1 this epoch"):
        ranks = [
            list(DurationBucketSampler(durations, max_seconds=5.0, num_replicas=2, rank=r)) for r in range(2)
        ]
    assert [len(r) for r in ranks] == [2, 2]
