"""``POST /v1/chat/completions``, OpenAI-compatible, with audio in and out.

- In: ``messages`` (a ``system`` message is the system prompt; user content is a string or parts of type
  ``text`` and ``input_audio`` ``{"data": base64, "format": "wav"}``; assistant content is text, or
  ``{"audio": {"id": ...}}`` naming an earlier spoken reply of this server), ``modalities`` (``["text"]``:
  a text reply; ``["text", "audio"]``: text and speech), ``audio`` ``{"voice": a speaker of the model,
  "format": "wav" | "flac" | "pcm16"}``, ``tools`` (function schemas), ``temperature``, ``top_p``,
  ``max_tokens`` / ``max_completion_tokens`` (5 Hz steps), ``seed``, ``stream``.
- Out: ``message.content`` (text replies) or ``message.audio`` ``{id, data, transcript, expires_at}``
  (spoken replies), ``tool_calls`` in OpenAI's shape; with ``stream: true``, server-sent events whose
  ``delta`` carries ``content`` or ``audio`` ``{id, transcript}`` / ``{id, data}`` (PCM16, 24 kHz) as the
  reply is made, then ``finish_reason`` and ``[DONE]``.

With a vLLM backend (``vllm_backend``), text-only requests are answered by vLLM.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict
from typing import Any

from aiohttp import web

from ..replies import AudioChunk, Done, Reply, TextDelta
from ..request import Request, Turn
from .engine import EngineBusy
from .keys import CONFIG, ENGINE, SAMPLING
from .openai_common import (
    AUDIO_OUT_FORMATS,
    OpenAIError,
    b64,
    b64_audio,
    encode_audio,
    json_body,
    openai_errors,
    sampling_from_body,
    whole_reply,
)
from .vllm_backend import VLLM

AUDIO_TTL_S = 3600  # how long a spoken reply's id can be named in a later request's history
KEPT_REPLIES = 1024


class SpokenReplies:
    """Recent spoken replies by id (their text and speech codes), so a client's history may name them."""

    def __init__(self):
        self._replies: OrderedDict[str, tuple[float, Reply]] = OrderedDict()

    def keep(self, reply: Reply, audio_id: str | None = None) -> tuple[str, int]:
        """Keep ``reply`` (under ``audio_id``, or a new id); returns its id and when it expires (Unix
        seconds)."""
        audio_id = audio_id or f"audio_{uuid.uuid4().hex}"
        expires = time.time() + AUDIO_TTL_S
        self._replies[audio_id] = (expires, reply)
        while len(self._replies) > KEPT_REPLIES:
            self._replies.popitem(last=False)
        return audio_id, int(expires)

    def get(self, audio_id: Any) -> Reply:
        entry = self._replies.get(audio_id) if isinstance(audio_id, str) else None
        if entry is None or entry[0] < time.time():
            raise OpenAIError(f"unknown or expired audio id {audio_id!r}", param="messages")
        return entry[1]


REPLIES = web.AppKey("spoken_replies", SpokenReplies)


def _user_turn(content: Any, index: int, max_seconds: float) -> Turn:
    if isinstance(content, str):
        return Turn("user", text=content)
    if not isinstance(content, list) or not content:
        raise OpenAIError(f"messages[{index}].content must be a string or a list of parts", param="messages")
    texts, audio = [], None
    for j, part in enumerate(content):
        where = f"messages[{index}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "input_audio" and isinstance(part.get("input_audio"), dict):
            if audio is not None:
                raise OpenAIError(f"{where}: one input_audio part per message", param="messages")
            audio = b64_audio(part["input_audio"].get("data"), f"{where}.input_audio.data", max_seconds)
        else:
            raise OpenAIError(f"{where} must be a text or an input_audio part", param="messages")
    return Turn("user", text=" ".join(texts) or None, audio=audio)


def _assistant_turn(message: dict, index: int, replies: SpokenReplies) -> Turn:
    audio = message.get("audio")
    if isinstance(audio, dict) and "id" in audio:
        reply = replies.get(audio["id"])
        return Turn("assistant", text=reply.text, speech_codes=tuple(reply.speech_codes.tolist()))
    content = message.get("content")
    if isinstance(content, list):  # text parts
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise OpenAIError(
            f"messages[{index}] (assistant) needs text content or an audio id", param="messages"
        )
    return Turn("assistant", text=content)


def chat_request(body: dict[str, Any], app: web.Application) -> tuple[Request, str | None]:
    """The pipeline request of a chat-completions body, and the audio format of the reply (None: text)."""
    config, speakers = app[CONFIG], app[ENGINE].pipe.vocoder.speakers
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise OpenAIError("messages must be a non-empty list", param="messages")
    if body.get("n", 1) != 1:
        raise OpenAIError("n must be 1", param="n")
    system, turns = None, []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            content = message.get("content")
            if not isinstance(content, str):
                raise OpenAIError(f"messages[{i}] (system) content must be a string", param="messages")
            system = content
        elif role == "user":
            turns.append(_user_turn(message.get("content"), i, config.max_turn_seconds))
        elif role == "assistant":
            turns.append(_assistant_turn(message, i, app[REPLIES]))
        else:
            raise OpenAIError(f"messages[{i}].role must be system, user or assistant, got {role!r}")
    if turns[-1].role != "user":
        raise OpenAIError("the last message must be the user's", param="messages")
    modalities = body.get("modalities") or ["text"]
    if (
        not isinstance(modalities, list)
        or not set(modalities) <= {"text", "audio"}
        or "text" not in modalities
    ):
        raise OpenAIError(
            f'modalities must be ["text"] or ["text", "audio"], got {modalities!r}', param="modalities"
        )
    fmt, voice = None, None
    if "audio" in modalities:
        audio = body.get("audio") or {}
        fmt = audio.get("format", "pcm16" if body.get("stream") else "wav")
        if fmt not in AUDIO_OUT_FORMATS:
            raise OpenAIError(
                f"audio.format must be one of {list(AUDIO_OUT_FORMATS)}, got {fmt!r}", param="audio"
            )
        if body.get("stream") and fmt != "pcm16":
            raise OpenAIError("streamed audio is pcm16: set audio.format to pcm16", param="audio")
        voice = audio.get("voice")
        if voice is not None and voice not in speakers:
            known = list(speakers) or "none"
            raise OpenAIError(f"unknown voice {voice!r}; this model has {known}", param="audio")
    last = turns[-1]
    try:
        request = Request(
            audio=last.audio,
            text=last.text,
            history=tuple(turns[:-1]),
            mode="s2s" if fmt else "s2t",
            system=system,
            tools=body.get("tools"),
            voice=voice,
            sampling=sampling_from_body(body, app[SAMPLING]),
            history_speech=True,
        )
    except ValueError as err:
        raise OpenAIError(str(err)) from None
    return request, fmt


def _tool_calls(reply: Reply) -> list[dict[str, Any]]:
    return [
        {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
        }
        for call in reply.tool_calls
    ]


def _completion(kind: str, model: str, choice: dict[str, Any], cid: str) -> dict[str, Any]:
    return {"id": cid, "object": kind, "created": int(time.time()), "model": model, "choices": [choice]}


@openai_errors
async def chat_completions(request: web.Request) -> web.StreamResponse:
    app = request.app
    body = await json_body(request)
    pipe_request, fmt = chat_request(body, app)  # checked here also when vLLM answers it
    backend = app.get(VLLM)
    if backend is not None and backend.takes(body):
        return await backend.forward(request, body)
    if body.get("stream"):
        return await _stream(request, body, pipe_request)
    reply = await whole_reply(app[ENGINE], pipe_request)
    message: dict[str, Any] = {"role": "assistant", "content": None if fmt else reply.text}
    if fmt:
        audio_id, expires = app[REPLIES].keep(reply)
        data = b64(encode_audio(reply.audio, fmt))
        message["audio"] = {"id": audio_id, "data": data, "expires_at": expires, "transcript": reply.text}
    calls = _tool_calls(reply)
    if calls:
        message["tool_calls"] = calls
    choice = {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
    model = body.get("model") or app[CONFIG].model_name
    return web.json_response(_completion("chat.completion", model, choice, f"chatcmpl-{uuid.uuid4().hex}"))


async def _stream(request: web.Request, body: dict[str, Any], pipe_request: Request) -> web.StreamResponse:
    """Server-sent events of one reply (see the module docstring); an error after the start is an
    ``error`` event."""
    app, cid = request.app, f"chatcmpl-{uuid.uuid4().hex}"
    model = body.get("model") or app[CONFIG].model_name
    spoken = pipe_request.speaks
    audio_id = f"audio_{uuid.uuid4().hex}"
    events = app[ENGINE].stream(pipe_request)
    first = await anext(events)  # a bad request or a busy engine fails here, before the 200
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)

    async def send(delta: dict[str, Any], finish: str | None = None) -> None:
        chunk = _completion(
            "chat.completion.chunk", model, {"index": 0, "delta": delta, "finish_reason": finish}, cid
        )
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

    await send({"role": "assistant", "content": None if spoken else ""})
    try:
        event = first
        while True:
            if isinstance(event, TextDelta):
                await send(
                    {"audio": {"id": audio_id, "transcript": event.text}}
                    if spoken
                    else {"content": event.text}
                )
            elif isinstance(event, AudioChunk):
                await send({"audio": {"id": audio_id, "data": b64(encode_audio(event.samples, "pcm16"))}})
            elif isinstance(event, Done):
                calls = _tool_calls(event.reply)
                if calls:
                    await send({"tool_calls": [{"index": i, **call} for i, call in enumerate(calls)]})
                if spoken:
                    _, expires = app[REPLIES].keep(event.reply, audio_id)
                    await send({"audio": {"id": audio_id, "expires_at": expires}})
                await send({}, "tool_calls" if calls else "stop")
                break
            event = await anext(events)
    except (ValueError, EngineBusy) as err:
        await response.write(f"data: {json.dumps(OpenAIError(str(err)).body())}\n\n".encode())
    finally:
        await events.aclose()
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response
