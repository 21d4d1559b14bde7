"""``funaudiochat serve``: the streaming server (``funaudiochat.chat.server``).

    funaudiochat serve --model FOLDER                     # http://127.0.0.1:8000, ws://.../api/chat
    funaudiochat serve --port 9000 --api-key KEY --max-sessions 32

It listens on 127.0.0.1 unless ``--host`` says otherwise; with ``--api-key`` every request needs
``Authorization: Bearer KEY`` (a browser's WebSocket may send ``?api_key=KEY``).
"""

from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    """The ``serve`` subcommand's arguments."""
    from .chat_command import add_pipeline_arguments
    from .server.config import ServerConfig

    d = ServerConfig()
    p = sub.add_parser("serve", help="run the streaming server", description=__doc__.splitlines()[0])
    p.add_argument("--model", help="pipeline folder (default: the shipped demo model, else a random one)")
    p.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host}: this machine)")
    p.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port})")
    p.add_argument("--api-key", help="require Authorization: Bearer KEY on every request")
    p.add_argument("--max-sessions", type=int, default=d.max_sessions, help="replies in the making at once")
    p.add_argument("--max-turn-seconds", type=float, default=d.max_turn_seconds, help="longest user turn")
    p.add_argument("--max-message-bytes", type=int, default=d.max_message_bytes, help="largest message")
    p.add_argument("--idle-timeout", type=float, default=d.idle_timeout_s, help="close silent sockets (s)")
    p.add_argument("--max-new-tokens", type=int, default=512, help="longest reply in 5 Hz steps")
    p.add_argument("--hop", type=int, default=15, help="speech codes per vocoder chunk (default 15)")
    p.add_argument("--hop-growth", type=int, default=1, help="each later hop this many times longer")
    p.add_argument("--max-hop", type=int, help="longest hop in codes (with --hop-growth > 1)")
    p.add_argument("--seed", type=int, default=0, help="the random pipeline's seed")
    p.add_argument("--threads", type=int, help="torch threads of the decoding engine (default: one per core)")
    p.add_argument(
        "--vllm-url",
        help="a vLLM server's OpenAI base URL (http://HOST:PORT/v1) that answers the text-only chat "
        "completions (docs/vllm.md); speech output stays here",
    )
    add_pipeline_arguments(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from .chat_command import choose_pipeline
    from .request import Sampling
    from .server.app import make_app
    from .server.config import ServerConfig
    from .server.engine import Engine, reserve_cores_for_engine

    config = ServerConfig(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        max_sessions=args.max_sessions,
        max_turn_seconds=args.max_turn_seconds,
        max_message_bytes=args.max_message_bytes,
        idle_timeout_s=args.idle_timeout,
        engine_threads=args.threads,
    )
    # before the model loads: this thread (the event loop's) must not keep an OpenMP team beside the engine's
    threads = reserve_cores_for_engine(config.engine_threads)
    sampling = Sampling(max_new_tokens=args.max_new_tokens)
    pipe = choose_pipeline(args.model, args.seed, "serve", args.quantize, args.plan_speech)
    pipe.set_hops(args.hop, args.hop_growth, args.max_hop)
    engine = Engine(pipe, config.max_sessions, audio_lead_s=config.audio_lead_s, threads=threads)
    app = make_app(engine, config, sampling, args.vllm_url)
    print(f"funaudiochat serve: http://{config.host}:{config.port} (WebSocket /api/chat)", file=sys.stderr)
    web.run_app(app, host=config.host, port=config.port, print=None)
    return 0
