"""``ReplyBatch``: replies made together, one row each, stepping in shared 5 Hz steps.

The batch holds the rows' decoding state (``funaudiochat.drsr.DecodingState``), their vocoder streams
(``Token2Wav`` cohorts) and each row's reply so far. A request joins between steps (``add``: prefilled
alone, then its caches joined to the running batch, as the streaming contract allows); a finished row
leaves at the step that ends it, a cancelled one whenever the caller ``drop`` s it. Each row's events are
those it gets alone: decoding and vocoding give every row of a batch what it gets by itself.

``Pipeline.stream`` is a batch of one row; ``Engine`` keeps one batch per decoding setting and feeds it the
sessions of a server.

Example:
    >>> batch = ReplyBatch(pipe)
    >>> events = batch.add(Request(audio="q.wav"), key="a")       # [(key, event), ...] of its first step
    >>> while batch.rows:
    ...     for key, event in batch.step():
    ...         print(key, event)
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
from funaudiochat.base.constants import SPEECH_CODES, VOCODER_SAMPLE_RATE
from funaudiochat.base.streaming import StreamState
from funaudiochat.drsr import decode_step, prefill

from .replies import AudioChunk, Done, Event, TextDelta, Timings
from .request import Request, Sampling
from .voices import resolve_voice

if TYPE_CHECKING:
    from .pipeline import Pipeline


def real_codes(ids: torch.Tensor) -> torch.Tensor:
    """The speech codes of a model output (the BOS delay, EOS and pad ids dropped), as a 1-D long tensor."""
    ids = ids.reshape(-1).long().cpu()
    return ids[(ids >= 0) & (ids < SPEECH_CODES)]


def _joined(pieces: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long)


def batch_key(request: Request) -> tuple[bool, Sampling]:
    """The decoding setting a request shares with the other rows of its batch (hashable): whether it
    speaks, and its sampling settings but the seed."""
    return request.speaks, replace(request.sampling, seed=0)


@dataclass
class ReplyRow:
    """One row's reply so far: ``key`` (the caller's name for it), the generated text ``ids``, the speech
    ``codes`` and ``audio`` pieces, the text already sent (``shown``) and the ``timings`` from ``start``
    (``time.perf_counter`` seconds)."""

    key: Hashable
    speaks: bool
    start: float
    ids: list[int] = field(default_factory=list)
    codes: list[torch.Tensor] = field(default_factory=list)
    audio: list[torch.Tensor] = field(default_factory=list)
    shown: str = ""
    timings: Timings = field(default_factory=Timings)
    waiting: list[torch.Tensor] = field(default_factory=list)  # codes not vocoded yet (audio_lead_s)

    def lead_s(self, now: float) -> float:
        """Seconds of audio made beyond what a listener who started at the first audio has heard."""
        if self.timings.first_audio_s is None:
            return 0.0
        made = sum(piece.numel() for piece in self.audio) / VOCODER_SAMPLE_RATE
        return made - (now - self.start - self.timings.first_audio_s)


class ReplyBatch:
    """Rows of replies decoded and vocoded together (see the module docstring).

    pipe: the pipeline whose model, vocoder and hop schedule the rows use; audio_lead_s: a row whose audio
    is this far ahead of real time keeps its new codes for later (None: every row's codes are vocoded at
    once), so that the vocoder serves first the rows a listener would hear a gap in, a new session's first
    audio above all. The audio is the same either way (the vocoder's chunks are counted in codes)."""

    def __init__(self, pipe: Pipeline, audio_lead_s: float | None = None):
        if audio_lead_s is not None and audio_lead_s < 0:
            raise ValueError(f"audio_lead_s must be >= 0 or None, got {audio_lead_s}")
        self.pipe = pipe
        self.audio_lead_s = audio_lead_s
        self.rows: list[ReplyRow] = []
        self.key: tuple[bool, Sampling] | None = None
        self._state = None  # DecodingState of the rows
        self._vocoder = None  # Token2Wav Cohorts of the rows (None when the rows do not speak)

    def add(
        self, request: Request, key: Hashable = None, start: float | None = None
    ) -> list[tuple[Any, Event]]:
        """Prefill ``request`` and join it as a new last row; returns the events of its first step.

        key: how the returned events name the row (default: the request); start: when the request came
        (``time.perf_counter()``; default now), the origin of its timings. A request whose decoding setting
        differs from the batch's (``batch_key``) is refused: it belongs in another batch."""
        start = time.perf_counter() if start is None else start
        key = request if key is None else key
        config = request.sampling.decoding(request.speaks)
        if self.rows and batch_key(request) != self.key:
            raise ValueError("this request decodes with other settings than the batch; give it its own batch")
        pipe = self.pipe
        inputs = pipe._inputs([request])
        vocoder = None
        if request.speaks:
            speaker = resolve_voice(request.voice, pipe.vocoder.speakers, pipe.speech_tokenizer)
            vocoder = pipe.vocoder.init_state(
                1,
                speaker,
                hop_tokens=pipe.hop_tokens,
                context_tokens=None,
                hop_growth=pipe.hop_growth,
                max_hop_tokens=pipe.max_hop_tokens,
            )
        plans = pipe.plans([request])
        config = pipe.spoken_config(config, plans)
        state, step = prefill(pipe.model, inputs, config, pipe._prefix(inputs, config), plans)
        if self.rows:
            self._state = StreamState.cat([self._state, state])
            self._vocoder = None if vocoder is None else StreamState.cat([self._vocoder, vocoder])
        else:
            self._state, self._vocoder, self.key = state, vocoder, batch_key(request)
        self.rows.append(ReplyRow(key, request.speaks, start))
        return self._after_step(step, only=len(self.rows) - 1)

    def step(self) -> list[tuple[Any, Event]]:
        """One 5 Hz step of every row: the events it makes, row by row, with the rows' keys (a row that
        ends here gives its last audio and ``Done``, and leaves the batch)."""
        if not self.rows:
            return []
        return self._after_step(decode_step(self.pipe.model, self._state))

    def absorb(self, other: ReplyBatch) -> None:
        """Take ``other``'s rows (of the same decoding setting) as this batch's last rows; ``other`` is left
        empty. Their states join as a later session joins (``StreamState.cat``)."""
        if not other.rows:
            return
        if not self.rows:
            self._state, self._vocoder, self.key = other._state, other._vocoder, other.key
        elif other.key != self.key:
            raise ValueError("a batch can take the rows of a batch with the same decoding setting only")
        else:
            self._state = StreamState.cat([self._state, other._state])
            self._vocoder = (
                None if self._vocoder is None else StreamState.cat([self._vocoder, other._vocoder])
            )
        self.rows = self.rows + other.rows
        other.rows, other._state, other._vocoder, other.key = [], None, None, None

    def drop(self, keys: list[Hashable]) -> None:
        """Take the rows named ``keys`` out of the batch (cancelled); the others go on unchanged."""
        gone = set(keys)
        self._keep([i for i, row in enumerate(self.rows) if row.key not in gone])

    # -- inside -----------------------------------------------------------------------------------------

    def _after_step(self, step, only: int | None = None) -> list[tuple[Any, Event]]:
        """Text deltas and speech codes of a step's rows (``only``: that row alone, just prefilled), the
        vocoder run on the codes, and the end of the rows that finished."""
        indices = range(len(self.rows)) if only is None else [only]
        events: list[tuple[Any, Event]] = []
        new_codes: dict[int, torch.Tensor] = {}
        pad = self.pipe._pad
        for i in indices:
            row, local = self.rows[i], (0 if only is not None else i)
            token, finished = int(step.text_tokens[local]), bool(step.finished[local])
            if not finished or token != pad:
                row.ids.append(token)
            text = self.pipe._visible_text(row.ids)
            if text != row.shown and text.startswith(row.shown):
                if row.timings.first_text_s is None:
                    row.timings.first_text_s = time.perf_counter() - row.start
                events.append((row.key, TextDelta(text[len(row.shown) :])))
                row.shown = text
            if row.speaks and bool(step.speech_valid[local]):
                row.waiting.append(real_codes(step.speech_tokens[local]))
                row.codes.append(row.waiting[-1])
        now = time.perf_counter()
        for i in indices:
            row = self.rows[i]
            if row.waiting and (self.audio_lead_s is None or row.lead_s(now) < self.audio_lead_s):
                new_codes[i] = torch.cat(row.waiting)
                row.waiting = []
        if new_codes:
            events += self._vocode(new_codes)
        ended = [i for i in indices if bool(self._state.finished[i])]
        if ended:
            events += self._finish(ended)
        return events

    def _vocode(self, codes: dict[int, torch.Tensor]) -> list[tuple[Any, Event]]:
        """Run the vocoder on new codes (a row index -> its codes; the other rows get none, which changes
        nothing in their streams) and return the audio they complete."""
        empty = torch.zeros(0, dtype=torch.long)
        waves = self.pipe.vocoder.step([codes.get(i, empty) for i in range(len(self.rows))], self._vocoder)
        return self._audio_events(dict(enumerate(waves)))

    def _audio_events(self, waves: dict[int, torch.Tensor]) -> list[tuple[Any, Event]]:
        events = []
        for i, wave in waves.items():
            if wave.numel():
                row = self.rows[i]
                if row.timings.first_audio_s is None:
                    row.timings.first_audio_s = time.perf_counter() - row.start
                row.audio.append(wave)
                events.append((row.key, AudioChunk(wave)))
        return events

    def _finish(self, ended: list[int]) -> list[tuple[Any, Event]]:
        """The last audio and ``Done`` of the rows ``ended``, which then leave the batch."""
        events = []
        if self._vocoder is not None:  # the ended rows' streams (apart, when others go on) are finalized
            state = self._vocoder if len(ended) == len(self.rows) else self._vocoder.select(ended)
            rest = [_joined(self.rows[i].waiting) for i in ended]  # codes still waiting, then the end
            waves = self.pipe.vocoder.step(rest, state, finalize=True)
            events += self._audio_events(dict(zip(ended, waves, strict=True)))
        for i in ended:
            row = self.rows[i]
            speech = (torch.cat(row.audio) if row.audio else torch.zeros(0)) if row.speaks else None
            reply = self.pipe._reply(row.ids, _joined(row.codes), speech, row.timings)
            reply.timings.total_s = time.perf_counter() - row.start
            events.append((row.key, Done(reply)))
        self._keep([i for i in range(len(self.rows)) if i not in set(ended)])
        return events

    def _keep(self, keep: list[int]) -> None:
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self._state = self._vocoder = self.key = None
            return
        self._state = self._state.select(keep)
        if self._vocoder is not None:
            self._vocoder = self._vocoder.select(keep)
