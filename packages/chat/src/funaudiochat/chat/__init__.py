"""funaudiochat.chat: the thin orchestration layer (the ``funaudiochat`` command; later pipeline, server)."""
