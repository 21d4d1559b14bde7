"""What the OpenAI-compatible endpoints share: errors in OpenAI's shape, audio in (base64 or files, any
format soundfile reads) and out (wav, flac, pcm16), and the request's sampling settings."""

from __future__ import annotations

import base64
import binascii
import functools
import io
import json
import math
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio
from aiohttp import web
from funaudiochat.base.constants import VOCODER_SAMPLE_RATE

from ..replies import Done, Reply
from ..request import Request, Sampling
from .engine import Engine, EngineBusy

MODEL_RATE = 16000
AUDIO_OUT_FORMATS = ("wav", "flac", "pcm16")


class OpenAIError(Exception):
    """A request the endpoint refuses: ``status`` (400, 401, 404, 429, ...), the ``message`` saying what was
    wrong and what is allowed, the request field (``param``) and OpenAI's error ``type``."""

    def __init__(self, message: str, status: int = 400, param: str | None = None, kind: str | None = None):
        super().__init__(message)
        self.status, self.param = status, param
        self.kind = kind or ("rate_limit_error" if status == 429 else "invalid_request_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param, "code": None}}

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status)


def openai_errors(handler):
    """An endpoint whose refusals answer in OpenAI's shape: ``OpenAIError`` as it says, ``EngineBusy`` as
    429, any other ``ValueError`` (bad input found deeper, e.g. by the pipeline) as 400."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except OpenAIError as err:
            return err.response()
        except EngineBusy as err:
            return OpenAIError(str(err), status=429).response()
        except ValueError as err:
            return OpenAIError(str(err)).response()

    return wrapped


async def whole_reply(engine: Engine, request: Request) -> Reply:
    """The reply to ``request`` once it is made (its streamed events are not needed)."""
    async for event in engine.stream(request):
        if isinstance(event, Done):
            return event.reply
    raise RuntimeError("the engine ended a reply without its Done event")


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (``OpenAIError`` when it is not one)."""
    try:
        body = json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise OpenAIError(f"the body is not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise OpenAIError(f"the body must be a JSON object, got {type(body).__name__}")
    return body


def read_audio(data: bytes, what: str, max_seconds: float) -> torch.Tensor:
    """Encoded audio (WAV, FLAC, OGG, MP3, ...) -> mono float32 ``[n]`` at 16 kHz (the model's rate)."""
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile's errors name the format problem
        raise OpenAIError(f"{what} could not be read as audio: {err}", param=what) from None
    if samples.shape[0] == 0:
        raise OpenAIError(f"{what} holds no audio samples", param=what)
    if samples.shape[0] / rate > max_seconds:
        seconds = samples.shape[0] / rate
        raise OpenAIError(f"{what} is {seconds:.1f} s long; the limit is {max_seconds:g} s", param=what)
    wave = torch.from_numpy(samples.mean(axis=1))
    return torchaudio.functional.resample(wave, rate, MODEL_RATE) if rate != MODEL_RATE else wave


def b64_audio(data: Any, what: str, max_seconds: float) -> torch.Tensor:
    """``read_audio`` of base64 text."""
    if not isinstance(data, str) or not data:
        raise OpenAIError(f"{what} must be base64 text", param=what)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise OpenAIError(f"{what} is not valid base64", param=what) from None
    return read_audio(raw, what, max_seconds)


def encode_audio(samples: torch.Tensor, fmt: str) -> bytes:
    """24 kHz float32 samples -> ``fmt`` bytes (``AUDIO_OUT_FORMATS``; pcm16: raw little-endian 16-bit).
    In numpy: it runs on the event loop, beside the engine's torch threads."""
    pcm = np.round(np.clip(samples.detach().cpu().numpy(), -1, 1) * 32767).astype(np.int16)
    if fmt == "pcm16":
        return pcm.astype("<i2").tobytes()
    out = io.BytesIO()
    sf.write(out, pcm, VOCODER_SAMPLE_RATE, format=fmt.upper(), subtype="PCM_16")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def pcm16_samples(data: bytes) -> np.ndarray:
    """Raw little-endian 16-bit PCM -> float32 samples."""
    if len(data) % 2:
        raise OpenAIError("PCM16 audio must have an even number of bytes", param="audio")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def sampling_from_body(body: dict[str, Any], base: Sampling) -> Sampling:
    """OpenAI's sampling fields -> ``Sampling`` (text temperature / top-p, the reply's length, the seed);
    fields not given keep ``base``'s value."""
    changes: dict[str, Any] = {}
    names = {"temperature": "text_temperature", "top_p": "text_top_p", "seed": "seed"}
    for name, field in names.items():
        if body.get(name) is not None:
            changes[field] = body[name]
    longest = body.get("max_completion_tokens", body.get("max_tokens"))
    if longest is not None:
        changes["max_new_tokens"] = longest
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value)):
            raise OpenAIError(f"{name} must be a number, got {value!r}", param=name)
    try:
        return Sampling(**{**base.__dict__, **changes})
    except ValueError as err:
        raise OpenAIError(str(err)) from None
