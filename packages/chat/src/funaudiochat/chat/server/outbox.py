"""``Outbox``: what a WebSocket session sends, written in order by one task (a session's reply task, its
pings and its answers to the client's messages all put their messages here)."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web


class Outbox:
    """Messages (bytes: binary frames; str: text frames) for ``ws``; a client that leaves ``limit`` of them
    unread is closed ("client too slow") rather than have the server hold its replies in memory.
    ``last_sent``: the event loop's time of the last message written."""

    def __init__(self, ws: web.WebSocketResponse, limit: int):
        self.ws = ws
        self._queue: asyncio.Queue[bytes | str | None] = asyncio.Queue(maxsize=limit)
        self.last_sent = asyncio.get_running_loop().time()
        self._sender = asyncio.get_running_loop().create_task(self._send_all())

    def put(self, message: bytes | str) -> None:
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self._end()
            asyncio.get_running_loop().create_task(self.ws.close(message=b"client too slow"))

    async def close(self, timeout: float = 5.0) -> None:
        """Write what waits (for at most ``timeout`` seconds), then stop."""
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._sender, timeout)

    def _end(self) -> None:
        """Drop what waits and stop the sender."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def _send_all(self) -> None:
        loop = asyncio.get_running_loop()
        while (message := await self._queue.get()) is not None:
            if self.ws.closed:
                return
            await (self.ws.send_bytes(message) if isinstance(message, bytes) else self.ws.send_str(message))
            self.last_sent = loop.time()
