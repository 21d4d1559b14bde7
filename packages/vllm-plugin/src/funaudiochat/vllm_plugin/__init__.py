"""A vLLM plugin (entry point ``vllm.general_plugins``) for Fun-Audio-Chat checkpoints.

vLLM loads every general plugin in each of its processes before it builds a model; ``register`` then
corrects what the installed vLLM gets wrong for ``FunAudioChatForConditionalGeneration`` and leaves a
vLLM that is already right alone. Today that is one fix (``audio_attention``): the continuous audio
encoder's attention weights, which vLLM 0.32 and 0.33 cannot load from any checkpoint (``docs/vllm.md``).

Install it beside vLLM (``pip install packages/vllm-plugin``); ``VLLM_PLUGINS=funaudiochat`` selects it
when several plugins are installed.
"""

from __future__ import annotations

from .audio_attention import fix_audio_attention_loading, needs_fix, qkv_target

__all__ = ["fix_audio_attention_loading", "needs_fix", "qkv_target", "register"]


def register() -> None:
    """vLLM's entry point: apply the fixes this vLLM needs (none if its model file is missing or right)."""
    fix_audio_attention_loading()
