"""What a server's handlers find on the application (``app[ENGINE]``, ...)."""

from __future__ import annotations

from aiohttp import web

from ..request import Sampling
from .config import ServerConfig
from .engine import Engine

ENGINE = web.AppKey("engine", Engine)
CONFIG = web.AppKey("config", ServerConfig)
SAMPLING = web.AppKey("sampling", Sampling)  # the sessions' default sampling settings
