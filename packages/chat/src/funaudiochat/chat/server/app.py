"""The aiohttp application of ``funaudiochat serve``: the routes, the API key and the engine's lifetime.

    >>> app = make_app(Engine(pipe), ServerConfig(port=8000))
    >>> web.run_app(app, host="127.0.0.1", port=8000)

Routes:

- ``GET /api/chat`` (also ``/api/simplex``, the path the official client opens): the official WebSocket
  protocol (``official_ws``);
- ``GET /``: the built-in page (``page/index.html``);
- OpenAI-compatible: ``POST /v1/chat/completions`` (``openai_chat``; text-only ones to vLLM when a vLLM URL is
  given, ``vllm_backend``), ``POST /v1/audio/transcriptions`` and ``GET /v1/models`` (``openai_audio``),
  ``GET /v1/realtime`` (``realtime``).
"""

from __future__ import annotations

import hmac
from pathlib import Path

from aiohttp import web

from ..request import Sampling
from .config import ServerConfig
from .engine import Engine
from .keys import CONFIG, ENGINE, SAMPLING
from .official_ws import official_chat
from .openai_audio import models, transcriptions
from .openai_chat import REPLIES, SpokenReplies, chat_completions
from .realtime import realtime
from .vllm_backend import VLLM, VLLMBackend


def make_app(
    engine: Engine,
    config: ServerConfig | None = None,
    sampling: Sampling | None = None,
    vllm_url: str | None = None,
) -> web.Application:
    """The server's application; the engine's worker starts and stops with it.

    engine: the sessions' engine (its pipeline answers); config: limits and the API key; sampling: the
    sessions' default sampling settings (a client's query parameters change them per session); vllm_url:
    a vLLM server's OpenAI base URL that answers the text-only chat completions (``vllm_backend``)."""
    config = config or ServerConfig()
    app = web.Application(middlewares=[_api_key(config.api_key)], client_max_size=config.max_message_bytes)
    app[ENGINE], app[CONFIG], app[SAMPLING] = engine, config, sampling or Sampling()
    app.router.add_get("/api/chat", official_chat)
    app.router.add_get("/api/simplex", official_chat)
    app[REPLIES] = SpokenReplies()
    backend = VLLMBackend(vllm_url) if vllm_url else None
    if backend is not None:
        app[VLLM] = backend
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/v1/realtime", realtime)
    app.router.add_get("/", page)

    async def lifetime(app: web.Application):
        engine.start()
        yield
        engine.stop()
        if backend is not None:
            await backend.close()

    app.cleanup_ctx.append(lifetime)
    return app


PAGE = Path(__file__).with_name("page") / "index.html"


async def page(request: web.Request) -> web.Response:
    """The built-in page (no secrets in it: it loads without the API key and asks for it)."""
    return web.Response(text=PAGE.read_text(encoding="utf-8"), content_type="text/html")


def _api_key(key: str | None):
    @web.middleware
    async def check(request: web.Request, handler):
        if key is not None and request.path != "/":
            given = request.headers.get("Authorization", "")
            given = given[7:] if given.startswith("Bearer ") else request.query.get("api_key", "")
            for offered in request.headers.get("Sec-WebSocket-Protocol", "").split(","):  # browsers' way
                if offered.strip().startswith("openai-insecure-api-key."):
                    given = given or offered.strip()[len("openai-insecure-api-key.") :]
            if not hmac.compare_digest(given.encode(), key.encode()):
                raise web.HTTPUnauthorized(
                    text='{"error": {"message": "a valid API key is needed: Authorization: Bearer <key>"}}',
                    content_type="application/json",
                )
        return await handler(request)

    return check
