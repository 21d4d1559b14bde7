"""``ServerConfig``: where a server listens and the limits it keeps (each checked with a clear error)."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class ServerConfig:
    """host / port: where to listen (127.0.0.1 by default: only this machine); api_key: when set, every
    request needs ``Authorization: Bearer <key>`` (WebSockets from a browser may send ``?api_key=<key>``);
    max_sessions: replies in the making at once (more: HTTP 429 / an error frame); max_turn_seconds: the
    longest user audio of one turn; max_message_bytes: the largest WebSocket message or HTTP body;
    idle_timeout_s: a WebSocket with no client message for this long is closed; ping_interval_s: an idle
    official-protocol session gets a ping this often (the official client closes after 30 s of
    silence); queue_size: a session's outgoing messages waiting to be sent, beyond which it is closed as
    too slow; max_history_turns: earlier turns a session keeps (the official server keeps 8); model_name:
    the model's name in the OpenAI-compatible endpoints; audio_lead_s: a reply whose audio is this far
    ahead of real time lets the others (a new session's first audio) use the vocoder first; engine_threads:
    torch threads of the decoding engine (None: one per core; ``engine.reserve_cores_for_engine``)."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_sessions: int = 16
    max_turn_seconds: float = 60.0
    max_message_bytes: int = 4 << 20
    idle_timeout_s: float = 300.0
    ping_interval_s: float = 10.0
    queue_size: int = 1024
    max_history_turns: int = 8
    model_name: str = "fun-audio-chat"
    audio_lead_s: float = 1.0
    engine_threads: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.port < 65536:
            problems.append(f"port must lie in [0, 65536), got {self.port}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("host", "api_key", "port", "model_name"):
                continue
            if f.name == "engine_threads":
                if value is not None and (not isinstance(value, int) or value < 1):
                    problems.append(f"engine_threads must be a whole number >= 1 or None, got {value!r}")
                continue
            if not isinstance(value, int | float) or value <= 0:
                problems.append(f"{f.name} must be > 0, got {value!r}")
        if self.api_key is not None and not self.api_key.strip():
            problems.append("api_key must not be empty (leave it out for no key)")
        if problems:
            raise ValueError("bad server settings: " + "; ".join(problems))
