"""One new position through a Qwen3 decoder stack, without transformers' per-call machinery.

A 5 Hz decoding step runs the shared LLM on one position and the SRH five times on one sub-frame; at the
sizes of this project each such call is a few small matrix-vector products, and the framework's work per
call (mask construction, output objects, per-layer wrappers) adds to them. ``decode_one`` is the same
computation as ``Qwen3Model.forward`` for one query position (RMSNorm, q/k/v with Qwen3's per-head q/k
norms, rotary, grouped-query attention over the cache, SiLU MLP, residuals) as plain tensor operations on
the model's own weights (no copies: the official 8B model leaves no memory for them). It appends to the
same transformers ``DynamicCache``, so decoding states stay what they were (``KVCache`` batch operations,
prefill by the full model). Results agree with the full model to float rounding (attention and softmax
are computed directly rather than through ``scaled_dot_product_attention``'s kernel choice); greedy
decodes give the same tokens (tests).

With the compiled extension loaded (and the ops backend not forced to ``reference``), a CPU call runs the
whole stack as one op, ``funaudiochat::qwen3_decode_one`` (``csrc/drsr_decode.cpp``): the same ATen
operations without the interpreter's cost per statement, writing into the spare room of the cache's
``GrowingLayer`` buffers. ``decode_one_reference`` is the Python body; tests compare the two.

``supports(model)`` says when it applies: a ``Qwen3Model`` with full attention on every layer and no
attention bias, in eval mode (no dropout); otherwise callers use the model itself.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from transformers.models.qwen3.modeling_qwen3 import Qwen3Model

from .kv_cache import GrowingLayer
from .ops.dispatch import choose_implementation
from .quantization import is_quantized


def supports(model: torch.nn.Module) -> bool:
    """Whether ``decode_one`` computes what ``model`` would (not with weight-only quantized layers)."""
    if not isinstance(model, Qwen3Model) or model.training or is_quantized(model):
        return False
    config = model.config
    layer_types = getattr(config, "layer_types", None) or []
    return (
        all(kind == "full_attention" for kind in layer_types)
        and not getattr(config, "attention_bias", False)
        and getattr(config, "hidden_act", "silu") == "silu"
    )


def project(x: torch.Tensor, layer: torch.nn.Module) -> torch.Tensor:
    """``layer(x)`` for the few rows of a decoding step: a plain ``nn.Linear`` through ``linear`` (its bias
    added), any other layer (a weight-only quantized one) as it computes itself."""
    if type(layer) is not torch.nn.Linear:
        return layer(x)
    y = linear(x, layer.weight)
    return y if layer.bias is None else y + layer.bias


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.linear(x, weight)`` (no bias) for the few rows ``x [..., K]`` of a decoding step, a product bound
    by reading the weight from memory. On the CPU: the extension's ``rows_linear`` (each thread reads its
    share of the weight's rows once; measured 2.2x faster than the batched product below for one step's
    weights), else the output columns split into one block per thread and run as one batched product (a
    matrix-vector product otherwise streams the weight on one thread: measured 7 GB/s plain, 10 GB/s
    split). The weight is never copied; each output is a dot product of the same numbers."""
    if x.device.type != "cpu" or torch.is_grad_enabled():
        return F.linear(x, weight)
    if choose_implementation(None, x.device) == "extension":
        return torch.ops.funaudiochat.rows_linear(x, weight)
    parts = torch.get_num_threads()
    n, k = weight.shape
    if parts < 2 or n < 64 * parts:
        return F.linear(x, weight)
    even = n - n % parts
    blocks = (weight if even == n else weight[:even]).view(parts, even // parts, k).transpose(1, 2)
    rows = x.reshape(-1, k)
    out = torch.bmm(rows.expand(parts, -1, -1), blocks)  # [parts, R, N / parts]
    # one row: the blocks' outputs already lie in column order; several: regroup them by row
    out = out.view(1, even) if rows.shape[0] == 1 else out.transpose(0, 1).reshape(rows.shape[0], even)
    if even < n:  # the last n % parts outputs (e.g. of a 6565-row head) as a plain product
        out = torch.cat((out, F.linear(rows, weight[even:])), dim=1)
    return out.view(*x.shape[:-1], n)


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen3RMSNorm: ``x / rms(x) * weight`` over the last dimension (in float32 for lower precisions)."""
    if x.dtype == torch.float32 and weight.dtype == torch.float32:
        return F.rms_norm(x, weight.shape, weight, eps)
    dtype = x.dtype
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def _prepare(model: Qwen3Model, inputs_embeds, attention_mask, position_ids):
    """The rotary factors ``[B, 1, 1, hd]`` of the new position and the additive mask ``[B, 1, 1, S]``."""
    cos, sin = model.rotary_emb(inputs_embeds, position_ids)  # [B, 1, hd]
    valid = attention_mask.bool()[:, None, None, :]
    bias = torch.zeros(valid.shape, dtype=inputs_embeds.dtype, device=valid.device).masked_fill_(
        ~valid, torch.finfo(inputs_embeds.dtype).min
    )
    return cos[:, None], sin[:, None], bias


_LAYER_WEIGHTS = (
    ("input_layernorm",),
    ("self_attn", "q_proj"),
    ("self_attn", "k_proj"),
    ("self_attn", "v_proj"),
    ("self_attn", "q_norm"),
    ("self_attn", "k_norm"),
    ("self_attn", "o_proj"),
    ("post_attention_layernorm",),
    ("mlp", "gate_proj"),
    ("mlp", "up_proj"),
    ("mlp", "down_proj"),
)


def _stack_weights(model: Qwen3Model) -> list[torch.Tensor]:
    """The weights ``qwen3_decode_one`` takes: 11 per layer (``_LAYER_WEIGHTS``' order), then the final
    norm. Read at every call (the model's current parameters) through the modules' dictionaries, which
    costs a fraction of attribute access at ~100 weights per call."""
    weights = []
    for layer in itertools.islice(model.layers, model.config.num_hidden_layers):
        for path in _LAYER_WEIGHTS:
            module = layer
            for name in path:
                module = module._modules[name]
            weights.append(module._parameters["weight"])
    weights.append(model.norm.weight)
    return weights


@torch.no_grad()
def decode_one(
    model: Qwen3Model,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    cache,
) -> torch.Tensor:
    """The final hidden state ``[B, 1, D]`` of one new position, appending its keys and values to ``cache``.

    inputs_embeds: ``[B, 1, D]``; attention_mask: ``[B, S]`` (1 = attend; S = cached positions + 1, the
    new one last); position_ids: ``[B, 1]`` rotary positions; cache: the ``DynamicCache`` of the earlier
    positions (updated in place). Runs the extension's op when it can (module docstring), else
    ``decode_one_reference``."""
    config = model.config
    layers = cache.layers[: config.num_hidden_layers]
    if (
        len(layers) < config.num_hidden_layers
        or not all(isinstance(layer, GrowingLayer) and layer.is_initialized for layer in layers)
        or choose_implementation(None, inputs_embeds.device) != "extension"
        or inputs_embeds.device.type != "cpu"
    ):
        return decode_one_reference(model, inputs_embeds, attention_mask, position_ids, cache)
    cos, sin, bias = _prepare(model, inputs_embeds, attention_mask, position_ids)
    length = layers[0].get_seq_length()
    rooms = [layer.reserve(length + 1) for layer in layers]
    hidden = torch.ops.funaudiochat.qwen3_decode_one(
        inputs_embeds,
        _stack_weights(model),
        [keys for keys, _ in rooms],
        [values for _, values in rooms],
        length,
        cos,
        sin,
        bias,
        config.num_attention_heads,
        config.num_key_value_heads,
        config.rms_norm_eps,
        model.layers[0].self_attn.scaling,
    )
    for layer in layers:
        layer.commit(length + 1)
    return hidden


@torch.no_grad()
def decode_one_reference(
    model: Qwen3Model,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    cache,
) -> torch.Tensor:
    """``decode_one`` in Python, for any transformers cache (the reference of ``qwen3_decode_one``)."""
    config = model.config
    b = inputs_embeds.shape[0]
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    groups = heads // kv_heads
    cos, sin, bias = _prepare(model, inputs_embeds, attention_mask, position_ids)
    hidden = inputs_embeds
    for index, layer in enumerate(model.layers[: config.num_hidden_layers]):
        attn = layer.self_attn
        x = _rms(hidden, layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon)
        q, k, v = linear(x, attn.q_proj.weight), linear(x, attn.k_proj.weight), linear(x, attn.v_proj.weight)
        q = _rms(q.view(b, 1, heads, head_dim), attn.q_norm.weight, attn.q_norm.variance_epsilon)
        k = _rms(k.view(b, 1, kv_heads, head_dim), attn.k_norm.weight, attn.k_norm.variance_epsilon)
        q = _rotate(q.transpose(1, 2), cos, sin)  # [B, H, 1, hd]
        k = _rotate(k.transpose(1, 2), cos, sin)  # [B, KV, 1, hd]
        v = v.view(b, 1, kv_heads, head_dim).transpose(1, 2)
        keys, values = cache.update(k, v, index)  # [B, KV, S, hd]
        # the query heads of one key/value head attend together: [B, KV, groups, hd]
        scores = torch.matmul(q.view(b, kv_heads, groups, head_dim), keys.transpose(2, 3)) * attn.scaling
        weights = torch.softmax(scores + bias, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(weights, values).reshape(b, 1, heads * head_dim)
        hidden = hidden + linear(out, attn.o_proj.weight)
        x = _rms(
            hidden, layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon
        )
        mlp = layer.mlp
        gated = F.silu(linear(x, mlp.gate_proj.weight)) * linear(x, mlp.up_proj.weight)
        hidden = hidden + linear(gated, mlp.down_proj.weight)
    return _rms(hidden, model.norm.weight, model.norm.variance_epsilon)
