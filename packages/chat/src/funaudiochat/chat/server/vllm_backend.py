"""Speech-to-text chat completions served by a vLLM engine: ``funaudiochat serve --vllm-url URL``.

vLLM serves the model's speech-to-text path (``docs/vllm.md``: ``funaudiochat export-vllm``, then ``vllm
serve``) and batches many such requests well; it has no speech output. With a vLLM URL the server sends it
every ``POST /v1/chat/completions`` whose reply is text alone (``modalities`` ``["text"]`` or none) and
which needs nothing vLLM lacks (no ``tools``: the official function-calling prompt is this server's; no
earlier spoken reply named by its audio id). Spoken replies, transcriptions, the Realtime API and the
official WebSocket protocol stay on this server's batched pipeline.

The request is checked here first (the same limits and errors as a local one), then forwarded with
``model`` set to vLLM's model id; vLLM's answer (JSON, or server-sent events with ``stream: true``) comes
back as it is, its status included. An unreachable vLLM is a 502 in OpenAI's error shape.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from .openai_common import OpenAIError


class VLLMBackend:
    """A vLLM OpenAI-compatible server at ``base_url`` (e.g. ``http://127.0.0.1:8001/v1``)."""

    def __init__(self, base_url: str, timeout_s: float = 600.0):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"the vLLM URL must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._model: str | None = None
        self._session: aiohttp.ClientSession | None = None

    @staticmethod
    def takes(body: dict[str, Any]) -> bool:
        """Whether the chat-completion request ``body`` goes to vLLM (module docstring)."""
        if (body.get("modalities") or ["text"]) != ["text"] or body.get("tools"):
            return False
        for message in body.get("messages") or []:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(message, dict) and message.get("audio"):
                return False
            if isinstance(content, dict) and "audio" in content:
                return False
        return True

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def model_id(self) -> str:
        """vLLM's model id (from its ``GET /models``, asked once)."""
        if self._model is None:
            session = await self._client()
            async with session.get(f"{self.base_url}/models") as response:
                listed = await response.json()
            try:
                self._model = str(listed["data"][0]["id"])
            except (KeyError, IndexError, TypeError) as err:
                raise OpenAIError(
                    f"the vLLM backend at {self.base_url} lists no model", status=502, kind="server_error"
                ) from err
        return self._model

    async def forward(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        """Send ``body`` to vLLM's ``/chat/completions`` and relay its answer to ``request``'s client."""
        try:
            session = await self._client()
            body = {**body, "model": await self.model_id()}
            async with session.post(f"{self.base_url}/chat/completions", json=body) as upstream:
                response = web.StreamResponse(
                    status=upstream.status,
                    headers={"Content-Type": upstream.headers.get("Content-Type", "application/json")},
                )
                await response.prepare(request)
                async for piece in upstream.content.iter_any():
                    await response.write(piece)
                await response.write_eof()
                return response
        except aiohttp.ClientError as err:
            raise OpenAIError(
                f"the vLLM backend at {self.base_url} is unreachable ({err})", status=502, kind="server_error"
            ) from err


VLLM = web.AppKey("vllm", VLLMBackend)  # the application's backend, when one is configured
