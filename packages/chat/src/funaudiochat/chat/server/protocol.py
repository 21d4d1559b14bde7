"""The official binary WebSocket protocol (moshi's, which the official web client speaks): every message is
one binary frame whose first byte is its kind. ``docs/protocol.md`` describes the conversation.

| kind | name | payload |
|---|---|---|
| 0 | handshake | server -> client, first: ``[version, model]`` (``[0, 0]``) |
| 1 | audio | Ogg/Opus pages, 24 kHz mono |
| 2 | text | UTF-8 text (the reply, piece by piece) |
| 3 | control | one byte: 0 start, 1 endTurn, 2 pause, 3 restart |
| 4 | metadata | a JSON object (client: ``{"system_prompt": ...}``; server: turn events) |
| 5 | error | UTF-8 text: what was wrong |
| 6 | ping | nothing (keeps an idle connection alive) |
| 7 | colored text | a colour byte, then UTF-8 text |

``parse`` turns a received frame into a ``Message`` or raises ``ProtocolError`` naming what was wrong; the
``encode_*`` functions make frames.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class Kind(IntEnum):
    HANDSHAKE = 0
    AUDIO = 1
    TEXT = 2
    CONTROL = 3
    METADATA = 4
    ERROR = 5
    PING = 6
    COLORED_TEXT = 7


class Control(IntEnum):
    START = 0
    END_TURN = 1
    PAUSE = 2
    RESTART = 3


KINDS = ", ".join(f"{k.value} {k.name.lower()}" for k in Kind)
CONTROLS = ", ".join(f"{c.value} {c.name.lower()}" for c in Control)
HANDSHAKE = bytes([Kind.HANDSHAKE, 0, 0])  # protocol version 0, model 0


class ProtocolError(ValueError):
    """A frame the protocol does not allow; the message says what was wrong and what is allowed."""


@dataclass(frozen=True)
class Message:
    """A parsed frame: ``kind`` and its ``value``: bytes (audio, ping), str (text, error), a ``Control``,
    a dict (metadata) or ``(colour, text)`` (coloured text)."""

    kind: Kind
    value: Any


def parse(frame: bytes | str, max_bytes: int = 1 << 20) -> Message:
    """A frame received from a client -> its ``Message``; ``ProtocolError`` when it breaks the protocol.

    frame: the WebSocket message (a text message is refused: the protocol is binary); max_bytes: the
    largest frame accepted."""
    if isinstance(frame, str):
        raise ProtocolError("text WebSocket messages are not part of this protocol: send binary frames")
    if not frame:
        raise ProtocolError("empty message: a frame starts with its kind byte")
    if len(frame) > max_bytes:
        raise ProtocolError(f"message of {len(frame)} bytes is over the limit of {max_bytes} bytes")
    if frame[0] not in Kind._value2member_map_:
        raise ProtocolError(f"unknown message kind {frame[0]} (known: {KINDS})")
    kind, payload = Kind(frame[0]), bytes(frame[1:])
    if kind == Kind.HANDSHAKE:
        raise ProtocolError("a handshake comes from the server; clients start a turn with control 0 (start)")
    if kind == Kind.AUDIO:
        if not payload:
            raise ProtocolError("audio message without Opus data")
        return Message(kind, payload)
    if kind in (Kind.TEXT, Kind.ERROR):
        return Message(kind, _utf8(payload, kind))
    if kind == Kind.CONTROL:
        if len(payload) != 1 or payload[0] not in Control._value2member_map_:
            raise ProtocolError(f"a control message holds one byte ({CONTROLS}); got {payload[:8]!r}")
        return Message(kind, Control(payload[0]))
    if kind == Kind.METADATA:
        try:
            value = json.loads(_utf8(payload, kind))
        except json.JSONDecodeError as err:
            raise ProtocolError(f"metadata is not valid JSON: {err}") from None
        if not isinstance(value, dict):
            raise ProtocolError(f"metadata must be a JSON object, got {type(value).__name__}")
        return Message(kind, value)
    if kind == Kind.PING:
        return Message(kind, payload)
    if not payload:
        raise ProtocolError("a colored text message needs a colour byte")
    return Message(kind, (payload[0], _utf8(payload[1:], kind)))


def _utf8(payload: bytes, kind: Kind) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ProtocolError(f"{kind.name.lower()} message is not valid UTF-8 (byte {err.start})") from None


def encode(kind: Kind, payload: bytes = b"") -> bytes:
    """A frame of ``kind`` with ``payload``."""
    return bytes([kind]) + payload


def encode_text(text: str) -> bytes:
    return encode(Kind.TEXT, text.encode("utf-8"))


def encode_error(message: str) -> bytes:
    return encode(Kind.ERROR, message.encode("utf-8"))


def encode_metadata(value: dict[str, Any]) -> bytes:
    return encode(Kind.METADATA, json.dumps(value).encode("utf-8"))


def encode_control(control: Control) -> bytes:
    return encode(Kind.CONTROL, bytes([control]))


def encode_audio(ogg: bytes) -> bytes:
    return encode(Kind.AUDIO, ogg)


PING = encode(Kind.PING)
