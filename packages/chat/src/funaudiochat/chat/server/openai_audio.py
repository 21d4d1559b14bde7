"""``POST /v1/audio/transcriptions`` (multipart, as OpenAI's: ``file``, ``model``, ``response_format`` json |
text | verbose_json; the model's ASR mode) and ``GET /v1/models``."""

from __future__ import annotations

import time

from aiohttp import web

from ..request import Request
from .keys import CONFIG, ENGINE, SAMPLING
from .openai_common import MODEL_RATE, OpenAIError, openai_errors, read_audio, whole_reply

FORMATS = ("json", "text", "verbose_json")


@openai_errors
async def transcriptions(request: web.Request) -> web.Response:
    app = request.app
    if not request.content_type.startswith("multipart/"):
        raise OpenAIError("send the audio as multipart/form-data with a 'file' field", param="file")
    form = await request.post()
    upload = form.get("file")
    if upload is None or not hasattr(upload, "file"):
        raise OpenAIError("the form needs a 'file' field with the audio", param="file")
    fmt = str(form.get("response_format") or "json")
    if fmt not in FORMATS:
        raise OpenAIError(
            f"response_format must be one of {list(FORMATS)}, got {fmt!r}", param="response_format"
        )
    wave = read_audio(upload.file.read(), "file", app[CONFIG].max_turn_seconds)
    reply = await whole_reply(app[ENGINE], Request(audio=wave, mode="asr", sampling=app[SAMPLING]))
    if fmt == "text":
        return web.Response(text=reply.text + "\n")
    if fmt == "json":
        return web.json_response({"text": reply.text})
    duration = wave.numel() / MODEL_RATE
    segment = {"id": 0, "start": 0.0, "end": round(duration, 3), "text": reply.text}
    body = {"task": "transcribe", "language": "english", "duration": round(duration, 3), "text": reply.text}
    return web.json_response({**body, "segments": [segment]})


async def models(request: web.Request) -> web.Response:
    name = request.app[CONFIG].model_name
    entry = {"id": name, "object": "model", "created": int(time.time()), "owned_by": "funaudiochat"}
    return web.json_response({"object": "list", "data": [entry]})
