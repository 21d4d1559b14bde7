"""funaudiochat.drsr: the dual-resolution core of Fun-Audio-Chat (5 Hz shared LLM + 25 Hz Speech Refined Head)."""
