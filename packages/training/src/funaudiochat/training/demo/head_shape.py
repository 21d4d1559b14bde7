"""The demo model's Speech Refined Head: its decoder's config (``DEMO_SRH``) and the rule that sizes it
(the recipe's ``srh_width`` / ``srh_layers``)."""

from __future__ import annotations

from typing import Any

DEMO_SRH = {
    "model_type": "qwen3",
    "hidden_size": 128,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "intermediate_size": 384,
    "rope_theta": 10000.0,
    "max_position_embeddings": 16384,
    "rms_norm_eps": 1e-6,
    "vocab_size": 6565,
}


def srh_shape(width: int, layers: int, head_dim: int = DEMO_SRH["head_dim"]) -> dict[str, int]:
    """The size fields of an SRH decoder ``width`` wide with ``layers`` layers: heads of ``head_dim``, one
    key-value head per two query heads, the feed-forward 3x as wide (``DEMO_SRH``'s proportions)."""
    if width < 2 * head_dim or width % (2 * head_dim):
        raise ValueError(f"srh_width must be a positive multiple of {2 * head_dim}, got {width}")
    if layers < 1:
        raise ValueError(f"srh_layers must be at least 1, got {layers}")
    heads = width // head_dim
    return {
        "hidden_size": width,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads // 2,
        "intermediate_size": 3 * width,
    }


def demo_srh(
    width: int = DEMO_SRH["hidden_size"], layers: int = DEMO_SRH["num_hidden_layers"]
) -> dict[str, Any]:
    """``DEMO_SRH`` at another ``width`` and depth (``srh_shape``)."""
    return {**DEMO_SRH, **srh_shape(width, layers)}
