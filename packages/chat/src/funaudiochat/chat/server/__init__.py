"""``funaudiochat serve``: one streaming server for the pipeline.

- ``engine``: the sessions decoded together (continuous batching over ``ReplyBatch``);
- ``protocol``: the official binary WebSocket protocol's frames (moshi's, spoken by the official client);
- ``official_ws``: ``GET /api/chat``, a spoken conversation in that protocol;
- ``app``: the aiohttp application and its limits (``ServerConfig``).
"""
