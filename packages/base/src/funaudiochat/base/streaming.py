"""The streaming contract: one way for every stateful module to run on input that arrives in pieces.

A module that streams offers two methods::

    state = module.init_state(batch_size, **options)      # B sessions, one row each, at their start
    outputs = module.step(inputs, state, finalize=False)  # the next piece of every row's input

Ownership, the same everywhere: the caller owns the state; ``step`` updates it **in place** and returns
only its outputs. The module keeps nothing of a session, so one module serves any number of states.
``finalize=True`` ends every row of the state (the rest of the output comes out); a later step raises.
The offline ``forward`` of the module is the same computation over the whole input, and tests show both
agree.

A state is data: a dataclass (subclass of ``StreamState``) whose tensors have a leading batch dimension,
one row per session. Because of that, a server batches sessions with three operations that every state has:

    >>> part = state.select([0, 2])          # a new state holding rows 0 and 2, in that order
    >>> both = StreamState.cat([a, b])       # a new state with a's rows, then b's
    >>> state.reset(mask, fresh)             # in place: rows where mask is True start again, from fresh

``cat`` joins sessions that are at different positions. States whose rows carry their own positions
(per-row lengths, offsets and masks: the audio encoder, the LLM and SRH decoding) become one batch that
steps as one; a module whose chunked schedule keeps all rows of a batch in lockstep (flow, HiFT, Token2Wav)
keeps its rows in ``Cohorts``: rows at the same position step together as one batch, rows at other
positions in their own cohort, and every row gets exactly what it would get alone.

How each field of a state takes part in the batch operations is declared with ``row()``, ``ragged()``,
``per_row()`` or ``shared()`` (see there); a field without a declaration is a row tensor when it is a
tensor, a nested state when it is a ``StreamState`` (or a list of them, each holding all rows), and shared
otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

S = TypeVar("S", bound="StreamState")

_KIND = "funaudiochat.stream_kind"
ROW, RAGGED, PER_ROW, SHARED, NESTED = "row", "ragged", "per_row", "shared", "nested"


class StateMismatch(ValueError):
    """States that cannot be joined into one batch (different shared values or row shapes)."""


def row(**kwargs) -> Any:
    """A tensor field ``[B, ...]`` (or a list, tuple or dict of such tensors, e.g. one per layer):
    selected and concatenated along dim 0; the other dims must match."""
    return dataclasses.field(metadata={_KIND: (ROW,)}, **kwargs)


def ragged(dim: int = -1, side: str = "right", fill: float = 0, **kwargs) -> Any:
    """A tensor field ``[B, ...]`` whose size along ``dim`` may differ between states (a cache, a queue):
    ``cat`` pads the shorter ones on ``side`` ("left" or "right") with ``fill``. The state itself says
    which entries of each row are valid (a mask or per-row lengths)."""
    if side not in ("left", "right"):
        raise ValueError(f"ragged side must be 'left' or 'right', got {side!r}")
    return dataclasses.field(metadata={_KIND: (RAGGED, dim, side, fill)}, **kwargs)


def per_row(**kwargs) -> Any:
    """A Python list with one item per row (generators, token histories)."""
    return dataclasses.field(metadata={_KIND: (PER_ROW,)}, **kwargs)


def shared(**kwargs) -> Any:
    """A value every row shares (a setting, a position of a lockstep batch, a noise source): ``cat``
    needs it equal (or the same object) in every state."""
    return dataclasses.field(metadata={_KIND: (SHARED,)}, **kwargs)


def row_index(rows: Sequence[int] | torch.Tensor, batch_size: int) -> list[int]:
    """Rows as a list of indices: a sequence or long tensor of indices (any order, repeats allowed), or a
    bool mask ``[B]``; out-of-range indices are a ``ValueError``."""
    if isinstance(rows, torch.Tensor):
        if rows.dtype == torch.bool:
            if rows.shape != (batch_size,):
                raise ValueError(f"a row mask must have shape [{batch_size}], got {list(rows.shape)}")
            return rows.nonzero().flatten().tolist()
        if rows.is_floating_point() or rows.ndim != 1:
            raise ValueError(
                f"rows must be a 1-D integer tensor or a bool mask, got {rows.dtype} {rows.ndim}-D"
            )
        rows = rows.tolist()
    index = [int(r) for r in rows]
    bad = [r for r in index if not 0 <= r < batch_size]
    if bad:
        raise ValueError(f"rows {bad} out of range for a batch of {batch_size}")
    return index


def _kind(field: dataclasses.Field, value: Any) -> tuple:
    declared = field.metadata.get(_KIND)
    if declared is not None:
        return declared
    if isinstance(value, StreamState) or (
        isinstance(value, list) and value and all(isinstance(v, StreamState) for v in value)
    ):
        return (NESTED,)
    if isinstance(value, torch.Tensor):
        return (ROW,)
    return (SHARED,)


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and bool((a == b).all())
        )
    try:
        return bool(a == b)
    except Exception:  # objects without a usable ==
        return False


def _pad_to(t: torch.Tensor, dim: int, size: int, side: str, fill: float) -> torch.Tensor:
    missing = size - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    pad = t.new_full(shape, fill)
    return torch.cat((pad, t) if side == "left" else (t, pad), dim=dim)


class StreamState:
    """Base of every streaming state (a dataclass). See the module docstring for the contract.

    Subclasses declare their fields (``row``, ``ragged``, ``per_row``, ``shared``) and may override
    ``batch_size``; states that hold something other than plain fields (a transformers cache) override
    ``_select_rows`` and ``_cat_states``."""

    @property
    def batch_size(self) -> int:
        """Rows (sessions) in this state."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            kind = _kind(field, value)
            if kind[0] in (ROW, RAGGED) and isinstance(value, torch.Tensor):
                return value.shape[0]
            if kind[0] == ROW and isinstance(value, list | tuple | dict) and value:
                first = next(iter(value.values())) if isinstance(value, dict) else value[0]
                return first.shape[0]
            if kind[0] == PER_ROW:
                return len(value)
            if kind[0] == NESTED:
                return (value[0] if isinstance(value, list) else value).batch_size
        raise TypeError(f"{type(self).__name__} has no per-row field to count its rows by")

    # -- the three batch operations -------------------------------------------------------------------------

    def select(self: S, rows: Sequence[int] | torch.Tensor) -> S:
        """A new state holding ``rows`` (indices in the new order, or a bool mask) of this one."""
        return self._select_rows(row_index(rows, self.batch_size))

    @staticmethod
    def cat(states: Sequence[S]) -> S:
        """A new state with the rows of ``states`` in order. Raises ``StateMismatch`` when they cannot
        be one batch (see the module docstring: lockstep modules join through ``Cohorts``)."""
        states = list(states)
        try:
            return _join(states)
        except StateMismatch as mismatch:
            if isinstance(states[0], Cohorts):
                raise
            raise StateMismatch(
                f"{mismatch} (a module that steps its rows in lockstep joins sessions at different "
                "positions as Cohorts: StreamState.cat([Cohorts.of(a), Cohorts.of(b)]))"
            ) from None

    def reset(self, mask: Sequence[bool] | torch.Tensor, fresh: StreamState) -> None:
        """In place: every row where ``mask`` is True becomes a fresh session, taken from ``fresh`` (a
        state made by ``init_state`` with either one row per masked row, in order, or as many rows as this
        state); the other rows are untouched."""
        mask = torch.as_tensor(mask, dtype=torch.bool).reshape(-1)
        b = self.batch_size
        if mask.shape[0] != b:
            raise ValueError(f"reset mask has {mask.shape[0]} entries for a batch of {b}")
        chosen = mask.nonzero().flatten().tolist()
        if not chosen:
            return
        if fresh.batch_size not in (b, len(chosen)):
            raise ValueError(
                f"reset needs a fresh state of {len(chosen)} rows (one per reset row) or {b}, "
                f"got {fresh.batch_size}"
            )
        take = {r: (i if fresh.batch_size == len(chosen) else r) for i, r in enumerate(chosen)}
        order = [b + take[r] if r in take else r for r in range(b)]
        joined = _join([self, fresh]).select(order)
        self._replace_contents(joined)

    # -- how the operations reach the fields ----------------------------------------------------------------

    def _replace_contents(self, other: StreamState) -> None:
        """Make this object hold ``other``'s contents (used by the in-place ``reset``)."""
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(other, field.name))

    def _select_rows(self: S, index: list[int]) -> S:
        values = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            kind = _kind(field, value)[0]
            if kind in (ROW, RAGGED):
                values[field.name] = _take(value, index)
            elif kind == PER_ROW:
                values[field.name] = [value[i] for i in index]
            elif kind == NESTED:
                values[field.name] = (
                    [v._select_rows(index) for v in value]
                    if isinstance(value, list)
                    else value._select_rows(index)
                )
            else:
                values[field.name] = value
        return dataclasses.replace(self, **values)

    def _cat_states(self: S, states: list[S]) -> S:
        values = {}
        for field in dataclasses.fields(self):
            items = [getattr(s, field.name) for s in states]
            kind = _kind(field, items[0])
            name = f"{type(self).__name__}.{field.name}"
            if kind[0] == ROW:
                values[field.name] = _cat_rows(items, name)
            elif kind[0] == RAGGED:
                _, dim, side, fill = kind
                size = max(t.shape[dim] for t in items)
                values[field.name] = _cat_rows([_pad_to(t, dim, size, side, fill) for t in items], name)
            elif kind[0] == PER_ROW:
                values[field.name] = [x for item in items for x in item]
            elif kind[0] == NESTED:
                if isinstance(items[0], list):
                    if len({len(item) for item in items}) > 1:
                        raise StateMismatch(f"{name}: states hold different numbers of sub-states")
                    values[field.name] = [_join(list(parts)) for parts in zip(*items, strict=True)]
                else:
                    values[field.name] = _join(items)
            else:
                if not all(_same(items[0], other) for other in items[1:]):
                    raise StateMismatch(
                        f"{name} differs between the states ({_describe(items)}); rows of one "
                        f"{type(self).__name__} batch must share it"
                    )
                values[field.name] = items[0]
        return dataclasses.replace(self, **values)


def _join(states: list[StreamState]) -> StreamState:
    """``StreamState.cat`` without its hint (the hint is added once, where a caller asked to join)."""
    if not states:
        raise ValueError("cat needs at least one state")
    kinds = {type(s) for s in states}
    if len(kinds) > 1:
        raise StateMismatch(f"cannot join states of different types: {sorted(k.__name__ for k in kinds)}")
    return states[0]._cat_states(states)


def _describe(items: list) -> str:
    shown = [repr(x) if not isinstance(x, torch.Tensor) else f"tensor{list(x.shape)}" for x in items[:4]]
    return ", ".join(shown)


def _take(value, index: list[int]):
    """Rows ``index`` of a tensor, or of each tensor of a list, tuple or dict."""
    if isinstance(value, dict):
        return {k: _take(v, index) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_take(v, index) for v in value)
    return value[torch.tensor(index, dtype=torch.long, device=value.device)]


def _cat_rows(items: list, name: str):
    """Tensors (or lists, tuples, dicts of them, alike in structure) joined along dim 0."""
    first = items[0]
    if isinstance(first, dict):
        if any(not isinstance(i, dict) or i.keys() != first.keys() for i in items):
            raise StateMismatch(f"{name}: the states hold different keys")
        return {k: _cat_rows([i[k] for i in items], f"{name}[{k!r}]") for k in first}
    if isinstance(first, list | tuple):
        if any(not isinstance(i, list | tuple) or len(i) != len(first) for i in items):
            raise StateMismatch(f"{name}: the states hold different numbers of tensors")
        return type(first)(
            _cat_rows(list(parts), f"{name}[{j}]") for j, parts in enumerate(zip(*items, strict=True))
        )
    shapes = {tuple(t.shape[1:]) for t in items}
    if len(shapes) > 1:
        raise StateMismatch(f"{name}: rows have different shapes {sorted(shapes)}; they cannot be one batch")
    return torch.cat(items)


def can_join(states: Sequence[StreamState]) -> bool:
    """Whether ``StreamState.cat(states)`` would give one batch."""
    try:
        _join(list(states))
    except StateMismatch:
        return False
    return True


@dataclasses.dataclass
class Cohorts(StreamState):
    """The state of a batch whose module steps its rows in lockstep (a chunked schedule shared by the
    batch: flow, HiFT, Token2Wav): the rows are kept in cohorts, each a lockstep state of rows at the
    same position. ``rows[i]`` lists the batch rows of cohort ``groups[i]``, in its order.

    ``cat`` puts joined states side by side and merges cohorts that are at the same position (so
    sessions that started together, or that reached the same point, share their steps); ``select`` and
    ``reset`` keep the cohorts' rows together. ``run`` steps every cohort."""

    groups: list[StreamState]
    rows: list[list[int]]

    @classmethod
    def of(cls, state: StreamState) -> Cohorts:
        """One lockstep state as a cohort of all its rows."""
        return cls([state], [list(range(state.batch_size))])

    @property
    def batch_size(self) -> int:
        return sum(len(r) for r in self.rows)

    @property
    def finished(self) -> bool:
        """Whether every cohort has been finalized."""
        return all(getattr(g, "finished", False) for g in self.groups)

    def _select_rows(self, index: list[int]) -> Cohorts:
        groups, rows = [], []
        for group, members in zip(self.groups, self.rows, strict=True):
            local = {r: i for i, r in enumerate(members)}
            picked = [(new, local[old]) for new, old in enumerate(index) if old in local]
            if picked:
                groups.append(group._select_rows([i for _, i in picked]))
                rows.append([new for new, _ in picked])
        return Cohorts(groups, rows)

    def _cat_states(self, states: list[Cohorts]) -> Cohorts:
        groups, rows, offset = [], [], 0
        for state in states:
            for group, members in zip(state.groups, state.rows, strict=True):
                for i, other in enumerate(groups):  # merge with a cohort at the same position
                    if can_join([other, group]):
                        groups[i] = _join([other, group])
                        rows[i] = rows[i] + [offset + r for r in members]
                        break
                else:
                    groups.append(group)
                    rows.append([offset + r for r in members])
            offset += state.batch_size
        return Cohorts(groups, rows)

    def run(
        self,
        inputs: Sequence[torch.Tensor] | torch.Tensor | None,
        step: Callable[[torch.Tensor | None, StreamState], Sequence[torch.Tensor]],
    ) -> list[torch.Tensor]:
        """Step every cohort: ``step(stacked inputs of its rows, cohort state) -> outputs [b, ...]``;
        returns one output per batch row, in batch order.

        inputs: per row (a list of B tensors, or a tensor ``[B, ...]``), or None (no input). Rows of a cohort
        advance alike: when they get inputs of different shapes (a server pushing a different number of
        tokens to each session), the cohort is first split, for good, into cohorts of equal inputs."""
        return self.gather([step(part, group) for part, group in self.parts(inputs)])

    def parts(
        self, inputs: Sequence[torch.Tensor] | torch.Tensor | None
    ) -> list[tuple[torch.Tensor | None, StreamState]]:
        """Each cohort with the stacked inputs of its rows (cohorts split first as ``run`` says): for modules
        that feed every cohort, then step them together (``gather`` makes their outputs per row)."""
        if inputs is not None:
            if len(inputs) != self.batch_size:
                raise ValueError(f"this batch has {self.batch_size} rows; got inputs for {len(inputs)}")
            self._split_by_shape([tuple(x.shape) for x in inputs])
        return [
            (None if inputs is None else torch.stack([inputs[r] for r in members]), group)
            for group, members in zip(self.groups, self.rows, strict=True)
        ]

    def gather(self, outputs: Sequence[Sequence[torch.Tensor]]) -> list[torch.Tensor]:
        """Per cohort its rows' outputs (``outputs[i]`` for ``groups[i]``, e.g. a ``[b, ...]`` tensor) -> one
        output per batch row, in batch order (what ``run`` returns)."""
        out: list[torch.Tensor | None] = [None] * self.batch_size
        for result, members in zip(outputs, self.rows, strict=True):
            for i, r in enumerate(members):
                out[r] = result[i]
        return out  # type: ignore[return-value]

    def _split_by_shape(self, shapes: list[tuple]) -> None:
        groups, rows = [], []
        for group, members in zip(self.groups, self.rows, strict=True):
            kinds: dict[tuple, list[int]] = {}
            for i, r in enumerate(members):
                kinds.setdefault(shapes[r], []).append(i)
            if len(kinds) == 1:
                groups.append(group)
                rows.append(members)
                continue
            for local in kinds.values():
                groups.append(group._select_rows(local))
                rows.append([members[i] for i in local])
        self.groups, self.rows = groups, rows
