"""The batch operations of the streaming contract on small hand-made states."""

from dataclasses import dataclass, field

import pytest
import torch
from funaudiochat.base import Cohorts, StateMismatch, StreamState, can_join, per_row, ragged, row, shared


@dataclass
class Toy(StreamState):
    """A running sum per row, a left-padded history, and a position shared by the batch."""

    total: torch.Tensor = row()
    history: torch.Tensor = ragged(dim=1, side="left", fill=-1)
    names: list = per_row()
    position: int = shared(default=0)
    finished: bool = shared(default=False)
    notes: dict = field(default_factory=dict)  # undeclared, not a tensor: shared


def toy(values, position=0, names=None):
    values = torch.tensor(values, dtype=torch.float32)
    history = torch.arange(len(values) * position).reshape(len(values), position)
    return Toy(values, history, names or [f"r{i}" for i in range(len(values))], position)


def test_select_takes_rows_in_the_given_order_and_by_mask():
    state = toy([1.0, 2.0, 3.0], position=2)
    part = state.select([2, 0])
    assert part.total.tolist() == [3.0, 1.0] and part.names == ["r2", "r0"]
    assert part.history.tolist() == [[4, 5], [0, 1]] and part.position == 2
    assert state.select(torch.tensor([False, True, False])).names == ["r1"]
    assert state.batch_size == 3 and part.batch_size == 2


def test_select_refuses_rows_out_of_range_and_bad_masks():
    state = toy([1.0, 2.0])
    with pytest.raises(ValueError, match=r"rows \[2\] out of range for a batch of 2"):
        state.select([2])
    with pytest.raises(ValueError, match=r"row mask must have shape \[2\]"):
        state.select(torch.tensor([True, False, True]))
    with pytest.raises(ValueError, match="integer tensor or a bool mask"):
        state.select(torch.tensor([0.0]))


def test_cat_pads_ragged_fields_and_needs_equal_shared_values():
    a, b = toy([1.0], position=1), toy([2.0, 3.0], position=1)
    b.history = torch.tensor([[7, 8, 9], [4, 5, 6]])
    joined = StreamState.cat([a, b])
    assert joined.total.tolist() == [1.0, 2.0, 3.0]
    assert joined.history.tolist() == [[-1, -1, 0], [7, 8, 9], [4, 5, 6]]
    assert joined.names == ["r0", "r0", "r1"]
    with pytest.raises(StateMismatch, match=r"Toy.position differs between the states \(1, 3\)"):
        StreamState.cat([a, toy([2.0], position=3)])
    assert not can_join([a, toy([2.0], position=3)]) and can_join([a, b])


def test_reset_restarts_only_the_masked_rows_in_place():
    state = toy([1.0, 2.0, 3.0], position=0)
    state.history = torch.tensor([[1], [2], [3]])
    same_object = state
    state.reset(
        torch.tensor([False, True, False]),
        Toy(torch.tensor([0.0]), torch.zeros(1, 0, dtype=torch.long), ["new"]),
    )
    assert state is same_object
    assert state.total.tolist() == [1.0, 0.0, 3.0] and state.names == ["r0", "new", "r2"]
    assert state.history.tolist() == [[1], [-1], [3]]  # the fresh row's empty history, left-padded
    with pytest.raises(ValueError, match="reset needs a fresh state of 1 rows"):
        state.reset([True, False, False], toy([0.0, 0.0]))


@dataclass
class Counter(StreamState):
    """A lockstep toy: every row of a batch is at ``position``; a step adds the position to the input."""

    seen: torch.Tensor = row()
    position: int = shared(default=0)


def count_step(x, state):
    out = x + state.position + state.seen
    state.seen = state.seen + x
    state.position += 1
    return out


def test_cohorts_step_rows_at_different_positions_as_they_would_alone():
    alone = Counter(torch.zeros(1))
    early = Counter(torch.zeros(2))
    for x in (torch.tensor([1.0]), torch.tensor([2.0])):
        count_step(x, alone)
    for x in (torch.tensor([5.0, 6.0]),):
        count_step(x, early)
    joined = StreamState.cat([Cohorts.of(early), Cohorts.of(alone)])
    assert len(joined.groups) == 2 and joined.rows == [[0, 1], [2]]
    out = joined.run(torch.tensor([1.0, 1.0, 1.0]), count_step)
    assert [o.item() for o in out] == [1 + 1 + 5, 1 + 1 + 6, 1 + 2 + 3]
    # a third session at the position of `alone` joins its cohort and shares its steps
    third = Counter(torch.tensor([0.0]), position=3)
    merged = StreamState.cat([joined, Cohorts.of(third)])
    assert len(merged.groups) == 2 and merged.rows == [[0, 1], [2, 3]]
    picked = merged.select([3, 0])
    assert picked.rows == [[1], [0]] and picked.batch_size == 2
    assert picked.groups[1].seen.tolist() == [0.0]
