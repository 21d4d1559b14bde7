"""``GET /api/chat``: a spoken conversation in the official WebSocket protocol (``protocol``; the
conversation is described in ``docs/protocol.md``).

The server sends the handshake first. A turn is control *start*, Opus audio, then control *pause* or
*endTurn*: the turn's audio (with the earlier turns and the session's system prompt) goes to the engine,
and the reply comes back as text frames and Opus audio frames while it is made, followed by a metadata
frame ``{"type": "end_turn", ...}`` (the official server sends no such end). *start* during a reply
interrupts it (barge-in at the next 5 Hz step), *restart* clears the history. The client's sliders arrive
as query parameters and set the session's sampling. Every bad frame gets an error frame naming what was
wrong, and the session goes on; pings keep an idle session alive; a session silent for
``idle_timeout_s`` is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import numpy as np
import torch
import torchaudio
from aiohttp import WSMsgType, web

from ..replies import AudioChunk, Done, TextDelta
from ..request import Request, Sampling, Turn
from .config import ServerConfig
from .engine import Engine, EngineBusy, cancel_task
from .keys import CONFIG, ENGINE, SAMPLING
from .opus import OPUS_RATE, OpusIn, OpusOut
from .outbox import Outbox
from .protocol import (
    HANDSHAKE,
    PING,
    Control,
    Kind,
    Message,
    ProtocolError,
    encode_audio,
    encode_error,
    encode_metadata,
    encode_text,
    parse,
)

MODEL_RATE = 16000  # the processor's input rate
MIN_TURN_SECONDS = 0.1

# the official client's sliders: query name -> (type, Sampling field or None when handled apart)
SLIDERS: dict[str, tuple[type, str | None]] = {
    "text_temperature": (float, "text_temperature"),
    "text_topk": (int, "text_top_k"),
    "audio_temperature": (float, "speech_temperature"),
    "audio_topk": (int, "speech_top_k"),
    "repetition_penalty": (float, "repetition_penalty"),
    "repetition_penalty_context": (int, "repetition_window"),
    "pad_mult": (float, "sil_scale"),
    "text_seed": (int, None),
    "audio_seed": (int, None),
}


def sampling_from_query(query: Mapping[str, str], base: Sampling | None = None) -> Sampling:
    """The sampling settings of a session from the client's query parameters (``SLIDERS``; others are
    ignored), validated. One generator draws text and speech, so ``text_seed`` and ``audio_seed`` make
    one seed together (either alone is the seed)."""
    values = {}
    for name, (kind, _) in SLIDERS.items():
        if name not in query:
            continue
        raw = query[name]
        try:
            values[name] = kind(float(raw)) if kind is int and float(raw).is_integer() else kind(raw)
        except ValueError:
            kind_name = "an integer" if kind is int else "a number"
            raise ValueError(f"query parameter {name} must be {kind_name}, got {raw!r}") from None
    changes = {field: values[name] for name, (_, field) in SLIDERS.items() if field and name in values}
    seeds = [values[name] for name in ("text_seed", "audio_seed") if name in values]
    if any(s < 0 for s in seeds):
        raise ValueError(f"query parameters text_seed and audio_seed must be >= 0, got {seeds}")
    if len(seeds) == 2:
        changes["seed"] = (seeds[0] * 1_000_003 + seeds[1]) % 2**63
    elif seeds:
        changes["seed"] = seeds[0] % 2**63
    base = base or Sampling()
    return Sampling(**{**base.__dict__, **changes})


async def official_chat(request: web.Request) -> web.WebSocketResponse:
    """The ``/api/chat`` handler (the app holds the ``engine`` and the ``config``)."""
    engine, config = request.app[ENGINE], request.app[CONFIG]
    # aiohttp itself closes the socket (1009) at twice the limit; below that, an error frame says it
    ws = web.WebSocketResponse(max_msg_size=2 * config.max_message_bytes)
    await ws.prepare(request)
    try:
        sampling = sampling_from_query(request.query, request.app[SAMPLING])
    except ValueError as err:
        await ws.send_bytes(encode_error(str(err)))
        await ws.close()
        return ws
    await OfficialSession(ws, engine, config, sampling).run()
    return ws


class OfficialSession:
    """One client's conversation (see the module docstring)."""

    def __init__(self, ws: web.WebSocketResponse, engine: Engine, config: ServerConfig, sampling: Sampling):
        self.ws, self.engine, self.config, self.sampling = ws, engine, config, sampling
        self.history: list[Turn] = []
        self.system: str | None = None
        self.recording: OpusIn | None = None
        self.pcm: list[np.ndarray] = []
        self.answer: asyncio.Task | None = None
        self.outbox: Outbox | None = None  # made when the session runs

    def send(self, frame: bytes) -> None:
        self.outbox.put(frame)

    async def _pinger(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.ping_interval_s
        while True:
            await asyncio.sleep(min(interval, 1.0))
            if loop.time() - self.outbox.last_sent >= interval:
                self.send(PING)
                self.outbox.last_sent = loop.time()

    # -- receiving ----------------------------------------------------------------------------------------

    async def run(self) -> None:
        self.outbox = Outbox(self.ws, self.config.queue_size)
        self.send(HANDSHAKE)
        pinger = asyncio.create_task(self._pinger())
        try:
            while True:
                try:
                    msg = await self.ws.receive(timeout=self.config.idle_timeout_s)
                except TimeoutError:
                    self.send(encode_error(f"no message for {self.config.idle_timeout_s:g} s: closing"))
                    break
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
                try:
                    await self.handle(parse(msg.data, self.config.max_message_bytes))
                except (ProtocolError, ValueError) as err:
                    self.send(encode_error(str(err)))
        finally:
            await self._stop_answer()
            pinger.cancel()
            await self.outbox.close()
            await self.ws.close()

    async def handle(self, message: Message) -> None:
        """One client message (``ValueError`` / ``ProtocolError``: an error frame, the session goes on)."""
        if message.kind == Kind.AUDIO:
            self._audio(message.value)
        elif message.kind == Kind.CONTROL:
            await self._control(message.value)
        elif message.kind == Kind.METADATA:
            self._metadata(message.value)
        elif message.kind in (Kind.TEXT, Kind.COLORED_TEXT):
            raise ProtocolError("text messages from the client are not supported: speak (audio frames)")
        # pings and the client's error reports need no answer

    def _audio(self, pages: bytes) -> None:
        if self.recording is None:
            raise ProtocolError("audio outside a turn: send control 0 (start) first")
        pcm = self.recording.push(pages)
        self.pcm.append(pcm)
        seconds = sum(p.shape[0] for p in self.pcm) / OPUS_RATE
        if seconds > self.config.max_turn_seconds:
            self.recording, self.pcm = None, []
            raise ValueError(
                f"the turn's audio is longer than {self.config.max_turn_seconds:g} s (the limit); "
                "the turn was dropped"
            )

    async def _control(self, control: Control) -> None:
        if control == Control.START:
            if await self._stop_answer():
                self.send(encode_metadata({"type": "interrupted"}))
            self.recording, self.pcm = OpusIn(), []
        elif control in (Control.END_TURN, Control.PAUSE):
            if self.recording is None:
                raise ProtocolError(f"control {control.name.lower()} without a turn: send start, then audio")
            audio = np.concatenate(self.pcm) if self.pcm else np.zeros(0, dtype=np.float32)
            self.recording, self.pcm = None, []
            if audio.shape[0] < MIN_TURN_SECONDS * OPUS_RATE:
                raise ValueError(
                    f"the turn has {audio.shape[0] / OPUS_RATE * 1000:.0f} ms of audio: too little"
                )
            self.answer = asyncio.create_task(self._reply(audio))
        else:  # restart
            await self._stop_answer()
            self.history, self.recording, self.pcm = [], None, []
            self.send(encode_metadata({"type": "restarted"}))

    def _metadata(self, value: dict) -> None:
        unknown = sorted(set(value) - {"system_prompt"})
        if unknown:
            raise ProtocolError(f"unknown metadata key(s) {unknown} (known: system_prompt)")
        prompt = value.get("system_prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise ProtocolError(f"system_prompt must be a string or null, got {type(prompt).__name__}")
        self.system = prompt or None

    async def _stop_answer(self) -> bool:
        """Cancel the reply in progress (if any); returns whether there was one."""
        task, self.answer = self.answer, None
        return await cancel_task(task)

    async def _reply(self, audio: np.ndarray) -> None:
        wave = torchaudio.functional.resample(torch.from_numpy(audio), OPUS_RATE, MODEL_RATE)
        request = Request(audio=wave, history=tuple(self.history), system=self.system, sampling=self.sampling)
        opus = OpusOut()
        try:
            async for event in self.engine.stream(request):
                if isinstance(event, TextDelta):
                    self.send(encode_text(event.text))
                elif isinstance(event, AudioChunk):
                    if pages := opus.push(event.samples):
                        self.send(encode_audio(pages))
                elif isinstance(event, Done):
                    if pages := opus.flush():
                        self.send(encode_audio(pages))
                    self._end_turn(wave, event.reply)
        except (EngineBusy, ValueError) as err:
            self.send(encode_error(str(err)))

    def _end_turn(self, wave: torch.Tensor, reply) -> None:
        t = reply.timings
        self.send(
            encode_metadata(
                {
                    "type": "end_turn",
                    "text": reply.text,
                    "audio_seconds": round(t.audio_s, 3),
                    "first_text_s": t.first_text_s,
                    "first_audio_s": t.first_audio_s,
                    "total_s": round(t.total_s, 3),
                }
            )
        )
        self.history += [Turn("user", audio=wave), Turn("assistant", text=reply.text)]
        self.history = self.history[-2 * self.config.max_history_turns :]
