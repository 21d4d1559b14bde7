"""The continuous audio encoder's attention weights in vLLM 0.32-0.33.

vLLM's ``FunAudioChatAudioAttention`` fuses ``q_proj``, ``k_proj`` and ``v_proj`` into one ``qkv_proj``
and loads them through a ``WeightsMapper`` whose stacked names are ``".q_proj"``, ``".k_proj"``,
``".v_proj"``. The mapper runs inside the attention module's own ``load_weights``, where the names are
relative to the module (``"k_proj.weight"``): no leading dot, no match, and the load stops with
``There is no module or parameter named 'k_proj' in FunAudioChatAudioAttention``. (Without the dots the
mapper would not work either: it substitutes every pattern in turn, and ``"v_proj"`` is found again inside
the ``"qkv_proj"`` that ``"k_proj"`` became.) ``fix_audio_attention_loading`` gives the class a
``load_weights`` that routes each projection to its shard of ``qkv_proj``.
"""

from __future__ import annotations

from collections.abc import Iterable

SHARDS = {"q_proj": "q", "k_proj": "k", "v_proj": "v"}


def qkv_target(name: str) -> tuple[str, str | None]:
    """A weight name relative to the attention module -> (the vLLM parameter it loads into, its shard
    of ``qkv_proj`` or None): ``"k_proj.weight"`` -> ``("qkv_proj.weight", "k")``,
    ``"out_proj.bias"`` -> ``("out_proj.bias", None)``."""
    head, _, rest = name.partition(".")
    shard = SHARDS.get(head)
    return (f"qkv_proj.{rest}", shard) if shard else (name, None)


def needs_fix(attention_class) -> bool:
    """Whether ``attention_class``'s own mapper fails to route ``k_proj.weight`` into ``qkv_proj``."""
    mapper = getattr(attention_class, "hf_to_vllm_mapper", None)
    if mapper is None or "load_weights" not in vars(attention_class):
        return False  # a vLLM that loads these weights another way
    mapped = mapper._map_name_with_shard("k_proj.weight")
    return mapped is None or mapped[0] != "qkv_proj.weight" or mapped[1] != "k"


def _load_weights(self, weights: Iterable[tuple[str, object]]) -> set[str]:
    """``load_weights`` of the attention module: each projection into its shard of ``qkv_proj``."""
    from vllm.model_executor.model_loader.weight_utils import default_weight_loader

    params = dict(self.named_parameters())
    loaded: set[str] = set()
    for name, tensor in weights:
        target, shard = qkv_target(name)
        if target not in params:
            raise ValueError(
                f"FunAudioChatAudioAttention has no parameter {target!r} for the checkpoint's {name!r} "
                f"(it has {sorted(params)})"
            )
        param = params[target]
        loader = getattr(param, "weight_loader", default_weight_loader)
        if shard is None:
            loader(param, tensor)
        else:
            loader(param, tensor, shard)
        loaded.add(target)
    return loaded


def fix_audio_attention_loading() -> bool:
    """Patch vLLM's ``FunAudioChatAudioAttention.load_weights`` where it is broken; returns whether it
    patched (False: no such vLLM model, or it loads correctly already)."""
    try:
        from vllm.model_executor.models import funaudiochat
    except ImportError:
        return False
    attention = getattr(funaudiochat, "FunAudioChatAudioAttention", None)
    if attention is None or getattr(attention, "_funaudiochat_fixed", False) or not needs_fix(attention):
        return False
    attention.load_weights = _load_weights
    attention._funaudiochat_fixed = True
    return True
