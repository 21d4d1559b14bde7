"""funaudiochat.chat: the thin orchestration layer (the ``funaudiochat`` command, later the pipeline and server)."""
