"""``GET /v1/realtime?model=...``: the OpenAI Realtime API (GA event names) over a WebSocket of JSON text
messages; audio is ``audio/pcm``, 24 kHz PCM16, base64.

Client events: ``session.update``, ``input_audio_buffer.append | commit | clear``,
``conversation.item.create``, ``response.create``, ``response.cancel``. Server events: ``session.created |
updated``, ``input_audio_buffer.speech_started | speech_stopped | committed | cleared`` (server-side voice
activity detection, ``vad``), ``conversation.item.added | done``, ``response.created``,
``response.output_item.added | done``, ``response.content_part.added | done``, ``response.output_text.delta
| done``, ``response.output_audio.delta | done``, ``response.output_audio_transcript.delta | done``,
``response.function_call_arguments.done``, ``response.done``, ``error``.

The conversation's items are the history of each response: user audio and text, assistant replies (their
text and speech codes), function outputs (as user text). With ``turn_detection`` ``server_vad`` (the
default) a pause after speech commits the buffer and starts a response, and speech during a response
interrupts it; with ``turn_detection: null`` the client commits and asks for responses itself.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from typing import Any

import numpy as np
import torch
import torchaudio
from aiohttp import WSMsgType, web

from ..replies import AudioChunk, Done, TextDelta
from ..request import Request, Turn
from .engine import EngineBusy, cancel_task
from .keys import CONFIG, ENGINE, SAMPLING
from .openai_common import encode_audio, pcm16_samples, sampling_from_body
from .outbox import Outbox
from .vad import SpeechDetector

RATE = 24000
MODEL_RATE = 16000
MIN_COMMIT_MS = 100


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def model_audio(pcm: bytes | np.ndarray) -> torch.Tensor:
    """24 kHz PCM16 (bytes) or float samples -> the model's 16 kHz float32 input."""
    samples = pcm16_samples(pcm) if isinstance(pcm, bytes) else pcm
    return torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(samples)), RATE, MODEL_RATE)


class RealtimeError(ValueError):
    """A client event the session refuses: ``code`` and the ``param`` at fault go into the error event."""

    def __init__(self, message: str, code: str = "invalid_value", param: str | None = None):
        super().__init__(message)
        self.code, self.param = code, param


async def realtime(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(
        protocols=("realtime",), max_msg_size=2 * request.app[CONFIG].max_message_bytes
    )
    await ws.prepare(request)
    await RealtimeSession(ws, request.app, request.query.get("model")).run()
    return ws


class RealtimeSession:
    """One Realtime connection (see the module docstring)."""

    def __init__(self, ws: web.WebSocketResponse, app: web.Application, model: str | None):
        self.ws, self.engine, self.config = ws, app[ENGINE], app[CONFIG]
        self.base_sampling = app[SAMPLING]
        voices = list(self.engine.pipe.vocoder.speakers)
        self.session: dict[str, Any] = {
            "type": "realtime",
            "id": new_id("sess"),
            "object": "realtime.session",
            "model": model or self.config.model_name,
            "output_modalities": ["audio"],
            "instructions": "",
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": RATE},
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.5,
                        "prefix_padding_ms": 300,
                        "silence_duration_ms": 500,
                        "create_response": True,
                        "interrupt_response": True,
                    },
                },
                "output": {
                    "format": {"type": "audio/pcm", "rate": RATE},
                    "voice": voices[0] if voices else None,
                },
            },
        }
        self.items: list[dict[str, Any]] = []  # the conversation, oldest first
        self.replies: dict[str, Any] = {}  # assistant item id -> the pipeline's Reply
        self.buffer = bytearray()
        self.vad = self._detector()
        self.response: asyncio.Task | None = None
        self.outbox: Outbox | None = None  # made when the session runs

    # -- plumbing ------------------------------------------------------------------------------------------

    def emit(self, kind: str, **fields: Any) -> None:
        self.outbox.put(json.dumps({"type": kind, "event_id": new_id("event"), **fields}))

    def error(self, err: Exception, event_id: str | None = None) -> None:
        code = getattr(err, "code", "invalid_value")
        self.emit(
            "error",
            error={
                "type": "invalid_request_error",
                "code": code,
                "message": str(err),
                "param": getattr(err, "param", None),
                "event_id": event_id,
            },
        )

    async def run(self) -> None:
        self.outbox = Outbox(self.ws, self.config.queue_size)
        self.emit("session.created", session=self.session)
        try:
            while True:
                try:
                    msg = await self.ws.receive(timeout=self.config.idle_timeout_s)
                except TimeoutError:
                    self.error(
                        RealtimeError(f"no event for {self.config.idle_timeout_s:g} s: closing", "timeout")
                    )
                    break
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
                event_id = None
                try:
                    if msg.type != WSMsgType.TEXT:
                        raise RealtimeError("Realtime events are JSON text messages", "invalid_event")
                    if len(msg.data) > self.config.max_message_bytes:
                        limit = self.config.max_message_bytes
                        raise RealtimeError(f"event of {len(msg.data)} bytes is over the limit of {limit}")
                    event = json.loads(msg.data)
                    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                        raise RealtimeError("an event is a JSON object with a string 'type'", "invalid_event")
                    event_id = event.get("event_id")
                    await self.handle(event)
                except json.JSONDecodeError as err:
                    self.error(RealtimeError(f"the event is not valid JSON: {err}", "invalid_json"))
                except ValueError as err:
                    self.error(err, event_id)
        finally:
            await self._cancel_response()
            await self.outbox.close()
            await self.ws.close()

    # -- client events -------------------------------------------------------------------------------------

    async def handle(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "session.update":
            self._update(event.get("session"))
        elif kind == "input_audio_buffer.append":
            await self._append(event.get("audio"))
        elif kind == "input_audio_buffer.commit":
            self._commit()
        elif kind == "input_audio_buffer.clear":
            self.buffer.clear()
            self.vad = self._detector()
            self.emit("input_audio_buffer.cleared")
        elif kind == "conversation.item.create":
            self._add_item(self._client_item(event.get("item")), event.get("previous_item_id"))
        elif kind == "response.create":
            await self._start_response(event.get("response") or {})
        elif kind == "response.cancel":
            if not await self._cancel_response():
                raise RealtimeError("no response is in progress", "response_cancel_not_active")
        else:
            raise RealtimeError(f"unknown event type {kind!r}", "invalid_event", "type")

    def _update(self, changes: Any) -> None:
        if not isinstance(changes, dict):
            raise RealtimeError("session.update needs a 'session' object", param="session")
        allowed = {"type", "model", "instructions", "output_modalities", "tools", "tool_choice", "audio"}
        allowed |= {"max_output_tokens", "temperature"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise RealtimeError(
                f"unknown session field(s) {unknown} (known: {sorted(allowed)})", param="session"
            )
        merged = json.loads(json.dumps(self.session))
        for key, value in changes.items():
            if key == "audio":
                if not isinstance(value, dict):
                    raise RealtimeError("session.audio must be an object", param="session.audio")
                for side in ("input", "output"):
                    if isinstance(value.get(side), dict):
                        merged["audio"][side].update(value[side])
            else:
                merged[key] = value
        self._check_session(merged)
        self.session = merged
        self.vad = self._detector()
        self.emit("session.updated", session=self.session)

    def _check_session(self, s: dict[str, Any]) -> None:
        if s["output_modalities"] not in (["audio"], ["text"]):
            raise RealtimeError(
                'output_modalities must be ["audio"] or ["text"]', param="session.output_modalities"
            )
        if not isinstance(s["instructions"], str):
            raise RealtimeError("instructions must be a string", param="session.instructions")
        for side in ("input", "output"):
            fmt = s["audio"][side].get("format") or {}
            if fmt.get("type") != "audio/pcm" or fmt.get("rate", RATE) != RATE:
                raise RealtimeError(
                    f"audio.{side}.format must be audio/pcm at {RATE} Hz", param=f"session.audio.{side}"
                )
        voice = s["audio"]["output"].get("voice")
        if voice is not None and voice not in self.engine.pipe.vocoder.speakers:
            known = list(self.engine.pipe.vocoder.speakers)
            raise RealtimeError(
                f"unknown voice {voice!r}; this model has {known}", param="session.audio.output.voice"
            )
        detection = s["audio"]["input"].get("turn_detection")
        if detection is not None and (
            not isinstance(detection, dict) or detection.get("type") != "server_vad"
        ):
            raise RealtimeError(
                "turn_detection must be null or {type: server_vad, ...}", param="session.audio.input"
            )
        self._sampling(s, {})  # checks temperature and max_output_tokens

    def _detector(self) -> SpeechDetector | None:
        d = self.session["audio"]["input"].get("turn_detection")
        if d is None:
            return None
        return SpeechDetector(
            d.get("threshold", 0.5), d.get("silence_duration_ms", 500), d.get("prefix_padding_ms", 300)
        )

    async def _append(self, audio: Any) -> None:
        if not isinstance(audio, str):
            raise RealtimeError("input_audio_buffer.append needs 'audio': base64 PCM16", param="audio")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise RealtimeError("'audio' is not valid base64", param="audio") from None
        samples = pcm16_samples(pcm)
        if (len(self.buffer) + len(pcm)) / 2 / RATE > self.config.max_turn_seconds:
            self.buffer.clear()
            raise RealtimeError(
                f"the input audio buffer is over {self.config.max_turn_seconds:g} s; it was cleared"
            )
        self.buffer += pcm
        if self.vad is None:
            return
        for what, ms in self.vad.push(samples):
            if what == "started":
                self.emit("input_audio_buffer.speech_started", audio_start_ms=ms, item_id=None)
                detection = self.session["audio"]["input"]["turn_detection"]
                if detection.get("interrupt_response", True):
                    await self._cancel_response()
            else:
                self.emit("input_audio_buffer.speech_stopped", audio_end_ms=ms, item_id=None)
                self._commit()
                if self.session["audio"]["input"]["turn_detection"].get("create_response", True):
                    await self._start_response({})
                return

    def _commit(self) -> dict[str, Any]:
        ms = len(self.buffer) / 2 / RATE * 1000
        if ms < MIN_COMMIT_MS:
            raise RealtimeError(
                f"buffer too small: {ms:.0f} ms of audio; a commit needs at least {MIN_COMMIT_MS} ms",
                "input_audio_buffer_commit_empty",
            )
        item = {
            "id": new_id("item"),
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        item["_audio"] = bytes(self.buffer)
        self.buffer.clear()
        previous = self.items[-1]["id"] if self.items else None
        self.emit("input_audio_buffer.committed", previous_item_id=previous, item_id=item["id"])
        self._add_item(item, previous)
        return item

    def _client_item(self, item: Any) -> dict[str, Any]:
        if not isinstance(item, dict):
            raise RealtimeError("conversation.item.create needs an 'item' object", param="item")
        kind = item.get("type", "message")
        out = {"id": item.get("id") or new_id("item"), "type": kind, "status": "completed"}
        if kind == "function_call_output":
            if not isinstance(item.get("output"), str):
                raise RealtimeError(
                    "a function_call_output item needs an 'output' string", param="item.output"
                )
            return {**out, "call_id": item.get("call_id"), "output": item["output"]}
        role = item.get("role")
        if kind != "message" or role not in ("user", "assistant", "system"):
            raise RealtimeError(
                "an item is a message of role user, assistant or system, or a function_call_output",
                param="item",
            )
        content = item.get("content")
        if not isinstance(content, list) or not content:
            raise RealtimeError("a message item needs a non-empty 'content' list", param="item.content")
        parts, audio = [], None
        for i, part in enumerate(content):
            t = part.get("type") if isinstance(part, dict) else None
            if t in ("input_text", "text", "output_text") and isinstance(part.get("text"), str):
                parts.append({"type": t, "text": part["text"]})
            elif t == "input_audio" and role == "user" and isinstance(part.get("audio"), str):
                try:
                    audio = base64.b64decode(part["audio"], validate=True)
                except (binascii.Error, ValueError):
                    raise RealtimeError(
                        f"item.content[{i}].audio is not valid base64", param="item.content"
                    ) from None
                parts.append({"type": "input_audio", "transcript": None})
            else:
                raise RealtimeError(
                    f"item.content[{i}] is not a text or (user) input_audio part", param="item.content"
                )
        out = {**out, "role": role, "content": parts}
        if audio is not None:
            out["_audio"] = audio
        return out

    def _add_item(self, item: dict[str, Any], previous: str | None = None, done: bool = True) -> None:
        """Append ``item`` to the conversation (``done``: it is complete already; else its
        ``conversation.item.done`` comes when it is)."""
        self.items.append(item)
        shown = {k: v for k, v in item.items() if not k.startswith("_")}
        previous = previous or (self.items[-2]["id"] if len(self.items) > 1 else None)
        self.emit("conversation.item.added", previous_item_id=previous, item=shown)
        if done:
            self.emit("conversation.item.done", previous_item_id=previous, item=shown)

    # -- responses -----------------------------------------------------------------------------------------

    def _sampling(self, session: dict[str, Any], overrides: dict[str, Any]):
        body = {}
        longest = overrides.get("max_output_tokens", session.get("max_output_tokens"))
        if longest not in (None, "inf"):
            body["max_tokens"] = longest
        temperature = overrides.get("temperature", session.get("temperature"))
        if temperature is not None:
            body["temperature"] = temperature
        try:
            return sampling_from_body(body, self.base_sampling)
        except Exception as err:
            raise RealtimeError(str(err), param="session") from None

    def _request(self, options: dict[str, Any]) -> Request:
        """The pipeline request of the conversation so far (its last user message is the question)."""
        turns, system = [], None
        for item in self.items:
            if item["type"] == "function_call_output":
                turns.append(Turn("user", text=item["output"]))
            elif item["type"] == "function_call":
                continue
            elif item["role"] == "system":
                system = " ".join(p["text"] for p in item["content"] if "text" in p)
            elif item["role"] == "user":
                text = " ".join(p["text"] for p in item["content"] if "text" in p) or None
                if "_audio" in item and "_wave" not in item:  # resampled once, kept for later responses
                    item["_wave"] = model_audio(item["_audio"])
                audio = item.get("_wave")
                turns.append(Turn("user", text=text, audio=audio))
            else:
                reply = self.replies.get(item["id"])
                text = (
                    reply.text
                    if reply
                    else " ".join(p.get("text", p.get("transcript") or "") for p in item["content"])
                )
                codes = (
                    tuple(reply.speech_codes.tolist())
                    if reply is not None and reply.speech_codes.numel()
                    else None
                )
                turns.append(Turn("assistant", text=text, speech_codes=codes))
        if not turns or turns[-1].role != "user":
            raise RealtimeError(
                "nothing to respond to: the conversation must end with a user message", "no_input"
            )
        modalities = options.get("output_modalities", self.session["output_modalities"])
        instructions = options.get("instructions", self.session["instructions"]) or system
        tools = options.get("tools", self.session["tools"]) or None
        last = turns[-1]
        return Request(
            audio=last.audio,
            text=last.text,
            history=tuple(turns[:-1]),
            mode="s2s" if modalities == ["audio"] else "s2t",
            system=instructions or None,
            tools=tools,
            voice=self.session["audio"]["output"].get("voice"),
            sampling=self._sampling(self.session, options),
            history_speech=True,
        )

    async def _start_response(self, options: dict[str, Any]) -> None:
        if self.response is not None and not self.response.done():
            raise RealtimeError(
                "a response is in progress; cancel it first", "conversation_already_has_active_response"
            )
        if not isinstance(options, dict):
            raise RealtimeError("'response' must be an object", param="response")
        request = self._request(options)
        self.response = asyncio.create_task(self._respond(request))

    async def _cancel_response(self) -> bool:
        task, self.response = self.response, None
        return await cancel_task(task)

    async def _respond(self, request: Request) -> None:
        rid, iid = new_id("resp"), new_id("item")
        audio_out = request.speaks
        response = {"id": rid, "object": "realtime.response", "status": "in_progress", "output": []}
        response["output_modalities"] = ["audio"] if audio_out else ["text"]
        self.emit("response.created", response=response)
        item = {"id": iid, "type": "message", "role": "assistant", "status": "in_progress", "content": []}
        ids = {"response_id": rid, "item_id": iid, "output_index": 0, "content_index": 0}
        self.emit("response.output_item.added", response_id=rid, output_index=0, item=item)
        self._add_item(dict(item), done=False)
        part = {"type": "audio", "transcript": ""} if audio_out else {"type": "text", "text": ""}
        self.emit("response.content_part.added", **ids, part=part)
        text, status = "", "completed"
        reply = None
        try:
            async for event in self.engine.stream(request):
                if isinstance(event, TextDelta):
                    text += event.text
                    kind = (
                        "response.output_audio_transcript.delta"
                        if audio_out
                        else "response.output_text.delta"
                    )
                    self.emit(kind, **ids, delta=event.text)
                elif isinstance(event, AudioChunk):
                    delta = base64.b64encode(encode_audio(event.samples, "pcm16")).decode()
                    self.emit("response.output_audio.delta", **ids, delta=delta)
                elif isinstance(event, Done):
                    reply = event.reply
        except asyncio.CancelledError:
            status = "cancelled"
        except (EngineBusy, ValueError) as err:
            self.error(err)
            status = "failed"
        text = reply.text if reply is not None else text.strip()
        if audio_out:
            self.emit("response.output_audio.done", **ids)
            self.emit("response.output_audio_transcript.done", **ids, transcript=text)
            part = {"type": "audio", "transcript": text}
        else:
            self.emit("response.output_text.done", **ids, text=text)
            part = {"type": "text", "text": text}
        self.emit("response.content_part.done", **ids, part=part)
        item = {**item, "status": "completed" if status == "completed" else "incomplete", "content": [part]}
        self.items = [item if i["id"] == iid else i for i in self.items]
        if reply is not None:
            self.replies[iid] = reply
        self.emit("response.output_item.done", response_id=rid, output_index=0, item=item)
        self.emit("conversation.item.done", item=item)
        output = [item]
        for n, call in enumerate(reply.tool_calls if reply is not None else [], start=1):
            call_item = {
                "id": new_id("item"),
                "type": "function_call",
                "status": "completed",
                "call_id": new_id("call"),
                "name": call.name,
                "arguments": json.dumps(call.arguments),
            }
            self.emit("response.output_item.added", response_id=rid, output_index=n, item=call_item)
            self.emit(
                "response.function_call_arguments.done",
                response_id=rid,
                item_id=call_item["id"],
                output_index=n,
                call_id=call_item["call_id"],
                name=call.name,
                arguments=call_item["arguments"],
            )
            self.emit("response.output_item.done", response_id=rid, output_index=n, item=call_item)
            self._add_item(call_item)
            output.append(call_item)
        self.emit("response.done", response={**response, "status": status, "output": output})
