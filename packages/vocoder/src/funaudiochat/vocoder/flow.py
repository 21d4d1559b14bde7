"""Flow matching: 25 Hz speech tokens -> 80-bin mel at 50 Hz, CosyVoice3's ``CausalMaskedDiffWithDiT``.

    tokens [B, N] (FSQ codes 0..6560)
      -> embedding (80)  -> pre-look-ahead convs (sees 3 future tokens)       mu  [B, N, 80]
      -> repeat x2 (token_mel_ratio)                                           mu  [B, 80, 2N]
      -> conditional flow matching: Euler steps from noise to mel, velocity from a DiT that reads
         cat[x, cond (prompt mel), mu, speaker] with classifier-free guidance  mel [B, 80, 2N]

The speaker is a 192-d CAM++ x-vector, L2-normalised then projected to 80. For voice cloning, prompt tokens
are put in front of the tokens and the prompt mel is the condition of the first frames; those frames are cut
from the output. With ``finalize=False`` the last 3 tokens are look-ahead context only (streaming: they come
back in the next call), so the mel has ``2 (N - 3)`` frames.

Parameter names and shapes are those of CosyVoice3's ``flow`` state dict (``input_embedding``,
``spk_embed_affine_layer``, ``pre_lookahead_layer.*``, ``decoder.estimator.*``), so its weights load
unchanged.

Inference noise: CosyVoice3 draws ``randn(1, 80, 15000)`` once, after seeding 0, and every call uses its
first ``T`` frames (the same noise for every batch item). ``CFMDecoder.rand_noise`` is that tensor (made from
a ``torch.Generator`` seeded with ``FlowConfig.noise_seed``; a non-persistent buffer), and
``inference(noise=...)`` takes any other ``[1 or B, 80, >= T]`` tensor.

Example:
    >>> flow = CausalFlowMatching(FlowConfig.tiny()).eval()
    >>> mel, mel_len = flow.inference(tokens, spk_embedding)      # [B, 80, 2N], [B]
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from funaudiochat.base.weights import check_state_dict
from torch import nn

from .conv import Conv1d
from .kept import kept
from .streaming import stream_conv


@dataclass
class FlowConfig:
    """Sizes of the token-to-mel model; names follow the arguments of CosyVoice3's flow modules."""

    vocab_size: int = 6561
    input_size: int = 80  # token embedding width = mu channels
    output_size: int = 80  # mel bins
    spk_embed_dim: int = 192
    token_mel_ratio: int = 2
    pre_lookahead_len: int = 3
    pre_lookahead_channels: int = 1024
    # DiT estimator
    dim: int = 1024
    depth: int = 22
    heads: int = 16
    dim_head: int = 64
    ff_mult: int = 2
    dropout: float = 0.1
    conv_pos_kernel: int = 31
    conv_pos_groups: int = 16
    # attention chunk of the streaming (chunk-causal) mask, in mel frames: 25 tokens x 2
    static_chunk_size: int = 50
    # conditional flow matching
    sigma_min: float = 1e-6
    t_scheduler: str = "cosine"
    training_cfg_rate: float = 0.2
    inference_cfg_rate: float = 0.7
    n_timesteps: int = 10
    noise_seed: int = 0
    noise_frames: int = 15000  # 300 s at 50 Hz

    @classmethod
    def tiny(cls) -> FlowConfig:
        return cls(
            pre_lookahead_channels=32,
            dim=64,
            depth=2,
            heads=4,
            dim_head=16,
            conv_pos_groups=4,
            static_chunk_size=8,
            noise_frames=2000,
        )


class PreLookaheadLayer(nn.Module):
    """Token features ``[B, N, C]`` -> ``[B, N, C]``; position n sees tokens n..n+L (zeros past the end)
    through ``conv1`` (kernel L+1), then a causal ``conv2`` (kernel 3), plus a residual."""

    def __init__(self, in_channels: int, channels: int, pre_lookahead_len: int = 3):
        super().__init__()
        self.pre_lookahead_len = pre_lookahead_len
        self.conv1 = Conv1d(in_channels, channels, kernel_size=pre_lookahead_len + 1)
        self.conv2 = Conv1d(channels, in_channels, kernel_size=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1.convolve(x.transpose(1, 2), (0, self.pre_lookahead_len)))
        h = self.conv2.convolve(h, (self.conv2.kernel_size[0] - 1, 0))
        return h.transpose(1, 2) + x


class TimestepEmbedding(nn.Module):
    """Flow time ``t [B]`` in [0, 1] -> ``[B, dim]``: sinusoids of ``1000 t`` (256 wide), then an MLP."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.time_mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device).float() * -(math.log(10000) / (half - 1)))
        angles = 1000 * t.unsqueeze(1) * freqs.unsqueeze(0)
        return self.time_mlp(torch.cat((angles.sin(), angles.cos()), dim=-1).to(t.dtype))


class CausalConvPositionEmbedding(nn.Module):
    """``[B, T, dim]`` -> ``[B, T, dim]``: two left-padded grouped convs, each followed by Mish."""

    def __init__(self, dim: int, kernel_size: int = 31, groups: int = 16):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv1 = nn.Sequential(Conv1d(dim, dim, kernel_size, groups=groups), nn.Mish())
        self.conv2 = nn.Sequential(Conv1d(dim, dim, kernel_size, groups=groups), nn.Mish())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        causal = (self.kernel_size - 1, 0)
        h = self.conv1[1](self.conv1[0].convolve(x.transpose(1, 2), causal))
        h = self.conv2[1](self.conv2[0].convolve(h, causal))
        return h.transpose(1, 2)


class InputEmbedding(nn.Module):
    """``proj(cat[x, cond, mu, spk])`` plus its causal conv position embedding; all ``[B, T, *]``."""

    def __init__(self, mel_dim: int, mu_dim: int, spk_dim: int, dim: int, kernel_size: int, groups: int):
        super().__init__()
        self.proj = nn.Linear(2 * mel_dim + mu_dim + spk_dim, dim)
        self.conv_pos_embed = CausalConvPositionEmbedding(dim, kernel_size, groups)

    def forward(self, x, cond, mu, spk) -> torch.Tensor:
        spk = spk.unsqueeze(1).expand(-1, x.shape[1], -1)
        h = self.proj(torch.cat((x, cond, mu, spk), dim=-1))
        return self.conv_pos_embed(h) + h


class RotaryEmbedding(nn.Module):
    """Rotary angles for positions 0..T-1 (interleaved pairs), as x-transformers 2.11 makes them.

    CosyVoice3 applies them to the projected q and k ``[B, T, heads * dim_head]`` before the head split with a
    rotary width of ``dim_head``: only the first head's channels rotate. ``inv_freq`` is a persistent buffer
    (it is in the official state dict)."""

    def __init__(self, dim_head: int):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (10000.0 ** (torch.arange(0, dim_head, 2).float() / dim_head)))

    def forward(self, seq_len: int, offset: int = 0) -> Rotary:
        """The rotation of positions ``offset .. offset + seq_len - 1``. The last one is kept: a solver
        asks for the same positions at each of its steps."""
        return kept(
            self, "_kept_rotary", (self.inv_freq,), lambda: self._rotary(seq_len, offset), (seq_len, offset)
        )

    def _rotary(self, seq_len: int, offset: int) -> Rotary:
        pos = torch.arange(offset, offset + seq_len, device=self.inv_freq.device).type_as(self.inv_freq)
        angles = pos[:, None] * self.inv_freq[None, :]  # [T, R/2]: one angle per channel pair
        return Rotary(torch.complex(angles.cos(), angles.sin()))


@dataclass
class Rotary:
    """The rotary turns ``exp(i angle)`` ``[T, R/2]`` (complex64): one per position and channel pair."""

    turn: torch.Tensor


def rotate_qk_(qkv: torch.Tensor, rope: Rotary) -> torch.Tensor:
    """Rotate, in place, the first ``R`` channels of q and of k in the fused projection ``qkv [B, T,
    3 * inner]`` (q, k, v side by side) by the angles of ``rope``; returns ``qkv``.

    Channels 2i, 2i+1 form the complex number x[2i] + i x[2i+1], multiplied by the turn of pair i: x[2i]
    cos - x[2i+1] sin and x[2i+1] cos + x[2i] sin, the interleaved rotary (one complex product instead of
    a pair swap, two products and a sum)."""
    rot, inner = 2 * rope.turn.shape[-1], qkv.shape[-1] // 3
    head = qkv[..., : 2 * inner].unflatten(-1, (2, inner))[..., :rot]  # [B, T, 2, R]: q's and k's
    pairs = torch.view_as_complex(head.float().unflatten(-1, (rot // 2, 2)).contiguous())
    head.copy_(torch.view_as_real(pairs * rope.turn[:, None]).flatten(-2))
    return qkv


class Attention(nn.Module):
    """Multi-head self-attention ``[B, T, dim]`` with a boolean mask ``[B, 1, T, S]`` (True = attend).

    ``past``: a ``KVBuffer`` with the keys and values of earlier frames (streaming): this call's are added
    to it and attended to after them (S = P + T; mask None = attend to all). ``valid [B, T]``: frames whose
    output is kept (padding outputs are zero). Returns the output and this call's keys and values (after
    the rotary)."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(dropout)])

    def forward(self, x, mask, rope, valid=None, past=None):
        b, t, _ = x.shape
        qkv = rotate_qk_(F.linear(x, *self.qkv_weights()), rope)
        q, k, v = (z.view(b, t, self.heads, -1).transpose(1, 2) for z in qkv.chunk(3, dim=-1))
        keys, values = (k, v) if past is None else past.extend(k, v)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        out = self.to_out[1](self.to_out[0](out.transpose(1, 2).reshape(b, t, -1)))
        if valid is not None:
            out = out.masked_fill(~valid.unsqueeze(-1), 0.0)
        return out, (k, v)

    def qkv_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``to_q``, ``to_k``, ``to_v`` stacked into one projection (one GEMM instead of three). Without
        autograd the stack is kept until a weight changes."""
        layers = (self.to_q, self.to_k, self.to_v)
        weights, biases = [layer.weight for layer in layers], [layer.bias for layer in layers]
        return kept(self, "_kept_qkv", weights + biases, lambda: (torch.cat(weights), torch.cat(biases)))


class AdaLayerNormZero(nn.Module):
    """LayerNorm (no affine, eps 1e-6) modulated by the time embedding; ``linear`` gives, in order,
    shift, scale, gate (attention) and shift, scale, gate (feed-forward)."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, 6 * dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def modulation(self, emb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Time embedding ``[B, dim]`` -> the six ``[B, 1, dim]`` modulations (depend on time only)."""
        return tuple(m.unsqueeze(1) for m in self.linear(F.silu(emb)).chunk(6, dim=1))

    def forward(self, x: torch.Tensor, modulation: tuple[torch.Tensor, ...]) -> torch.Tensor:
        shift, scale = modulation[0], modulation[1]
        return torch.addcmul(shift, self.norm(x), 1 + scale)


class AdaLayerNormZeroFinal(nn.Module):
    """Final modulated LayerNorm; ``linear`` gives scale then shift."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def modulation(self, emb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Time embedding ``[B, dim]`` -> ``(scale, shift)``, each ``[B, 1, dim]``."""
        return tuple(m.unsqueeze(1) for m in self.linear(F.silu(emb)).chunk(2, dim=1))

    def forward(self, x: torch.Tensor, modulation: tuple[torch.Tensor, ...]) -> torch.Tensor:
        scale, shift = modulation
        return torch.addcmul(shift, self.norm(x), 1 + scale)


class FeedForward(nn.Module):
    """Linear -> GELU (tanh) -> dropout -> Linear, nested as ``ff.0.0`` / ``ff.2`` (the official names)."""

    def __init__(self, dim: int, mult: int, dropout: float):
        super().__init__()
        inner = dim * mult
        self.ff = nn.Sequential(
            nn.Sequential(nn.Linear(dim, inner), nn.GELU(approximate="tanh")),
            nn.Dropout(dropout),
            nn.Linear(inner, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(x)


class DiTBlock(nn.Module):
    """Pre-norm transformer block with AdaLayerNormZero modulation and gated residuals."""

    def __init__(self, dim: int, heads: int, dim_head: int, ff_mult: int, dropout: float):
        super().__init__()
        self.attn_norm = AdaLayerNormZero(dim)
        self.attn = Attention(dim, heads, dim_head, dropout)
        self.ff_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(dim, ff_mult, dropout)

    def forward(self, x, modulation, mask, rope, valid=None, past=None):
        """``modulation``: ``attn_norm.modulation(time embedding)``. As ``Attention``: returns the block
        output and this call's keys and values."""
        _, _, gate, shift_ff, scale_ff, gate_ff = modulation
        attended, kv = self.attn(self.attn_norm(x, modulation), mask, rope, valid, past)
        x = torch.addcmul(x, gate, attended)
        h = torch.addcmul(shift_ff, self.ff_norm(x), 1 + scale_ff)
        return torch.addcmul(x, gate_ff, self.ff(h)), kv


def attention_mask(mask: torch.Tensor, chunks: ChunkPolicy | None = None) -> torch.Tensor:
    """Frame mask ``[B, 1, T]`` (True = valid) -> attention mask ``[B, 1, T, T]``.

    ``chunks``: chunk-causal attention; frame i sees the frames of its own chunk and of the
    ``chunks.context`` chunks before it (None: all of them). Chunks are counted from frame ``chunks.start``;
    the frames before it belong to the first chunk (a voice prompt runs with the first chunk of speech).
    A query row with no visible key is opened fully (its output is padding), as CosyVoice does."""
    b, _, t = mask.shape
    allowed = mask.expand(b, t, t)
    if chunks is not None:
        chunk = chunks.chunk_ids(t, mask.device)
        ahead = chunk.unsqueeze(0) - chunk.unsqueeze(1)  # [query, key]: key chunk - query chunk
        visible = ahead <= 0
        if chunks.context is not None:
            visible = visible & (ahead >= -chunks.context)
        allowed = allowed & visible
    allowed = allowed | ~allowed.any(dim=-1, keepdim=True)
    return allowed.unsqueeze(1)


class DiT(nn.Module):
    """Velocity estimator: ``(x, mask, mu, t, spks, cond)`` -> ``[B, mel, T]``.

    x, mu, cond: ``[B, C, T]``; mask ``[B, 1, T]``; t ``[B]`` or a scalar; spks ``[B, spk_dim]``."""

    def __init__(
        self,
        mel_dim: int,
        mu_dim: int,
        spk_dim: int,
        dim: int,
        depth: int,
        heads: int,
        dim_head: int,
        ff_mult: int,
        dropout: float,
        conv_pos_kernel: int,
        conv_pos_groups: int,
        static_chunk_size: int,
    ):
        super().__init__()
        self.static_chunk_size = static_chunk_size
        self.time_embed = TimestepEmbedding(dim)
        self.input_embed = InputEmbedding(mel_dim, mu_dim, spk_dim, dim, conv_pos_kernel, conv_pos_groups)
        self.rotary_embed = RotaryEmbedding(dim_head)
        self.transformer_blocks = nn.ModuleList(
            DiTBlock(dim, heads, dim_head, ff_mult, dropout) for _ in range(depth)
        )
        self.norm_out = AdaLayerNormZeroFinal(dim)
        self.proj_out = nn.Linear(dim, mel_dim)

    def forward(
        self, x, mask, mu, t, spks, cond, streaming: bool = False, chunks: ChunkPolicy | None = None
    ) -> torch.Tensor:
        """``streaming=True``: chunk-causal attention with ``static_chunk_size`` chunks, or as ``chunks``
        says."""
        x, mu, cond = x.transpose(1, 2), mu.transpose(1, 2), cond.transpose(1, 2)
        if t.ndim == 0:
            t = t.repeat(x.shape[0])
        modulations = self.modulations(t)
        h = self.input_embed(x, cond, mu, spks)
        rope = self.rotary_embed(h.shape[1])
        valid = mask.bool()
        if streaming:
            attn_mask = attention_mask(valid, chunks or ChunkPolicy(self.static_chunk_size))
        elif bool(valid.all()):  # no padding: plain full attention, nothing to zero
            attn_mask, valid = None, None
        else:
            attn_mask = attention_mask(valid)
        for block, modulation in zip(self.transformer_blocks, modulations, strict=False):
            h, _ = block(h, modulation, attn_mask, rope, None if valid is None else valid[:, 0])
        return self.proj_out(self.norm_out(h, modulations[-1])).transpose(1, 2)

    def modulations(self, t: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """Flow time ``[B]`` -> each block's modulations, then the final norm's.

        They depend on the time alone, and a solver visits the same few times in every call: without
        autograd they are kept (per time vector, until a weight changes), so each stream chunk and each
        utterance after the first skips these small, slow matrix-vector products."""
        layers = [self.time_embed, *(b.attn_norm for b in self.transformer_blocks), self.norm_out]
        params = [p for layer in layers for p in layer.parameters()]
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return self._modulations(t)
        by_time = kept(self, "_kept_modulations", params, dict)  # a fresh dict for new weights
        key = (tuple(t.tolist()), t.dtype, t.device)
        if key not in by_time:
            if len(by_time) >= 256:  # many distinct times (another solver): start again
                by_time.clear()
            with torch.inference_mode(False), torch.no_grad():  # plain tensors, usable in any mode
                by_time[key] = self._modulations(t.clone())
        return by_time[key]

    def _modulations(self, t: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        emb = self.time_embed(t)
        return [block.attn_norm.modulation(emb) for block in self.transformer_blocks] + [
            self.norm_out.modulation(emb)
        ]

    def init_cache(self, batch_size: int) -> DiTCache:
        """An empty streaming cache for ``batch_size`` rows (see ``step``)."""
        param = self.proj_out.weight
        pad = self.input_embed.conv_pos_embed.kernel_size - 1
        heads, dim_head = self.transformer_blocks[0].attn.heads, self.rotary_embed.inv_freq.numel() * 2
        return DiTCache(
            conv=[param.new_zeros(batch_size, param.shape[1], pad) for _ in range(2)],
            kv=[KVBuffer(param.new_zeros(batch_size, heads, 0, dim_head)) for _ in self.transformer_blocks],
        )

    def step(self, x, mu, t, spks, cond, cache: DiTCache) -> tuple[torch.Tensor, DiTCache]:
        """The next frames of a stream: x, mu, cond ``[B, C, n]``, t ``[B]``, spks ``[B, spk]``, and the
        cache of the frames before (their causal-conv inputs, keys and values) -> ``(velocity [B, mel, n],
        cache with these frames)``. The n frames see each other and every cached frame: one chunk of the
        chunk-causal ``forward``. Trim ``cache`` (``DiTCache.keep_last``) to bound the context."""
        x, mu, cond = x.transpose(1, 2), mu.transpose(1, 2), cond.transpose(1, 2)
        modulations = self.modulations(t)
        embed = self.input_embed
        spk = spks.unsqueeze(1).expand(-1, x.shape[1], -1)
        h = embed.proj(torch.cat((x, cond, mu, spk), dim=-1))
        pos, conv = h.transpose(1, 2), []
        for layer, context in zip(
            (embed.conv_pos_embed.conv1, embed.conv_pos_embed.conv2), cache.conv, strict=True
        ):
            pos, context = stream_conv(layer[0], pos, context)
            pos = layer[1](pos)
            conv.append(context)
        h = pos.transpose(1, 2) + h
        rope = self.rotary_embed(h.shape[1], offset=cache.position)
        for block, modulation, kv in zip(self.transformer_blocks, modulations, cache.kv, strict=False):
            h, _ = block(h, modulation, None, rope, None, kv)
        velocity = self.proj_out(self.norm_out(h, modulations[-1])).transpose(1, 2)
        return velocity, DiTCache(conv, cache.kv, cache.position + x.shape[1])


@dataclass
class ChunkPolicy:
    """Chunk-causal attention: chunks counted from frame ``start`` (earlier frames join the first chunk);
    each chunk sees itself and ``context`` chunks before it (None: all). The first chunk has ``size``
    frames, each next one ``growth`` times its predecessor's, at most ``max_size`` (None: no bound), so a
    stream can start with a short chunk (early audio) and go on with longer, cheaper ones."""

    size: int
    start: int = 0
    context: int | None = None
    growth: int = 1
    max_size: int | None = None

    def __post_init__(self):
        if self.size < 1 or self.growth < 1:
            raise ValueError(f"chunk size and growth must be >= 1, got {self.size} and {self.growth}")
        if self.max_size is not None and self.max_size < self.size:
            raise ValueError(f"max chunk size {self.max_size} is below the first chunk's {self.size}")

    def next_size(self, size: int) -> int:
        """The size of the chunk after one of ``size`` frames."""
        grown = size * self.growth
        return grown if self.max_size is None else min(grown, self.max_size)

    def chunk_ids(self, frames: int, device=None) -> torch.Tensor:
        """The chunk index of each of ``frames`` frames ``[frames]``."""
        pos = (torch.arange(frames, device=device) - self.start).clamp(min=0)
        if self.growth == 1 or self.max_size == self.size:
            return torch.div(pos, self.size, rounding_mode="floor")
        ends, size, total = [], self.size, 0
        while total < frames:
            total += size
            ends.append(total)
            size = self.next_size(size)
        return torch.bucketize(pos, torch.tensor(ends, device=device), right=True)


@dataclass
class DiTCache:
    """One DiT's streaming cache: the causal position convs' input context ``[B, dim, kernel - 1]`` (x2),
    and per block a ``KVBuffer`` of the frames kept; ``position`` is the absolute index of the next frame
    (its rotary angle). The key/value buffers are updated in place."""

    conv: list[torch.Tensor]
    kv: list[KVBuffer]
    position: int = 0

    def keep_last(self, frames: int) -> DiTCache:
        """Forget all but the keys and values of the last ``frames`` frames (in place); returns self."""
        for buffer in self.kv:
            buffer.keep_last(frames)
        return self


class KVBuffer:
    """Keys and values ``[B, heads, P, dim_head]`` of a stream's past frames, in preallocated storage that
    grows by doubling and is compacted when full, so a chunk costs a copy of its own frames only."""

    def __init__(self, empty: torch.Tensor):
        self.keys = self.values = empty
        self.start = self.end = 0

    def __len__(self) -> int:
        return self.end - self.start

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``k``, ``v`` ``[B, heads, n, dim_head]``; returns views of all kept keys and values."""
        n, kept = k.shape[2], len(self)
        if self.end + n > self.keys.shape[2]:
            capacity = max(2 * (kept + n), 16)
            keys, values = (z.new_empty(*z.shape[:2], capacity, z.shape[3]) for z in (k, v))
            keys[:, :, :kept] = self.keys[:, :, self.start : self.end]
            values[:, :, :kept] = self.values[:, :, self.start : self.end]
            self.keys, self.values, self.start, self.end = keys, values, 0, kept
        self.keys[:, :, self.end : self.end + n] = k
        self.values[:, :, self.end : self.end + n] = v
        self.end += n
        return self.keys[:, :, self.start : self.end], self.values[:, :, self.start : self.end]

    def keep_last(self, frames: int) -> None:
        self.start = max(self.start, self.end - frames)


def t_schedule(t: torch.Tensor, scheduler: str) -> torch.Tensor:
    """Map uniform times in [0, 1] onto the solver / training schedule (``cosine``: 1 - cos(t pi / 2))."""
    if scheduler == "cosine":
        return 1 - torch.cos(t * 0.5 * torch.pi)
    if scheduler == "linear":
        return t
    raise ValueError(f"unknown t_scheduler {scheduler!r} (expected 'cosine' or 'linear')")


class CFMDecoder(nn.Module):
    """Conditional flow matching (CosyVoice3's ``CausalConditionalCFM``) around the DiT ``estimator``.

    Sampling integrates dx/dt = v from noise (t = 0) to mel (t = 1) with Euler steps on the scheduled grid;
    v = (1 + cfg) v(mu, spk, cond) - cfg v(0, 0, 0). ``rand_noise`` ``[1, mel, noise_frames]`` is the fixed
    starting noise (see the module docstring)."""

    def __init__(self, config: FlowConfig):
        super().__init__()
        c = config
        self.sigma_min = c.sigma_min
        self.t_scheduler = c.t_scheduler
        self.training_cfg_rate = c.training_cfg_rate
        self.inference_cfg_rate = c.inference_cfg_rate
        self.estimator = DiT(
            c.output_size,
            c.input_size,
            c.output_size,
            c.dim,
            c.depth,
            c.heads,
            c.dim_head,
            c.ff_mult,
            c.dropout,
            c.conv_pos_kernel,
            c.conv_pos_groups,
            c.static_chunk_size,
        )
        generator = torch.Generator().manual_seed(c.noise_seed)
        noise = torch.randn(1, c.output_size, c.noise_frames, generator=generator, device="cpu")
        self.register_buffer("rand_noise", noise, persistent=False)

    @torch.no_grad()
    def forward(
        self,
        mu,
        mask,
        spks,
        cond,
        n_timesteps: int = 10,
        streaming: bool = False,
        noise: torch.Tensor | None = None,
        chunks: ChunkPolicy | None = None,
    ) -> torch.Tensor:
        """mu, cond ``[B, 80, T]``; mask ``[B, 1, T]``; spks ``[B, 80]``; noise ``[1 or B, 80, >= T]``
        (default ``rand_noise``); ``chunks``: the chunk-causal policy when ``streaming`` (default: chunks of
        ``static_chunk_size``). Returns the mel ``[B, 80, T]`` (float32)."""
        frames = mu.shape[2]
        noise = self.rand_noise if noise is None else noise
        if noise.shape[2] < frames:
            raise ValueError(
                f"the inference noise covers {noise.shape[2]} frames but {frames} are needed; "
                "pass a longer noise tensor or raise FlowConfig.noise_frames"
            )
        x = noise[:, :, :frames].to(device=mu.device, dtype=mu.dtype).expand_as(mu)
        t_span = self.time_span(n_timesteps, mu.device, mu.dtype)
        return self.solve_euler(x, t_span, mu, mask, spks, cond, streaming, chunks).float()

    def time_span(self, n_timesteps: int, device=None, dtype=None) -> torch.Tensor:
        """The ``n_timesteps + 1`` solver times from 0 to 1 on the schedule."""
        return t_schedule(torch.linspace(0, 1, n_timesteps + 1, device=device, dtype=dtype), self.t_scheduler)

    def guided(self, velocity: torch.Tensor) -> torch.Tensor:
        """Rows ``[cond; uncond]`` of a velocity -> ``(1 + cfg) v_cond - cfg v_uncond``."""
        v_cond, v_uncond = velocity.chunk(2)
        return (1.0 + self.inference_cfg_rate) * v_cond - self.inference_cfg_rate * v_uncond

    @staticmethod
    def euler(x: torch.Tensor, t_span: torch.Tensor, velocity) -> torch.Tensor:
        """Integrate ``dx/dt = velocity(x, t, step_index)`` over ``t_span`` with Euler steps."""
        t, dt = t_span[0], t_span[1] - t_span[0]
        for step in range(1, len(t_span)):
            x = x + dt * velocity(x, t, step - 1)
            # time is accumulated and the next step is measured from it, as CosyVoice does
            t = t + dt
            if step < len(t_span) - 1:
                dt = t_span[step + 1] - t
        return x

    def solve_euler(self, x, t_span, mu, mask, spks, cond, streaming: bool = False, chunks=None):
        """Euler steps over ``t_span``; the conditional and unconditional branches run as one batch."""
        b = x.shape[0]
        mask_in = torch.cat((mask, mask))
        mu_in = torch.cat((mu, torch.zeros_like(mu)))
        spks_in = torch.cat((spks, torch.zeros_like(spks)))
        cond_in = torch.cat((cond, torch.zeros_like(cond)))

        def velocity(x, t, _):
            v = self.estimator(
                torch.cat((x, x)), mask_in, mu_in, t.expand(2 * b), spks_in, cond_in, streaming, chunks
            )
            return self.guided(v)

        return self.euler(x, t_span, velocity)

    def compute_loss(
        self,
        x1,
        mask,
        mu,
        spks,
        cond,
        streaming: bool = False,
        t: torch.Tensor | None = None,
        z: torch.Tensor | None = None,
        cfg_keep: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flow-matching MSE over the masked frames; returns ``(loss, y)``.

        x1 (target mel), mu, cond ``[B, 80, T]``; mask ``[B, 1, T]``; spks ``[B, 80]``. Drawn when not given,
        in this order (as CosyVoice draws them): ``t [B]`` (uniform, then the schedule; a given ``t`` is
        used as is), noise ``z`` like x1, and ``cfg_keep [B]`` (False drops mu, spks and cond of that item,
        with probability ``training_cfg_rate``). y = (1 - (1 - sigma_min) t) z + t x1, target
        u = x1 - (1 - sigma_min) z. (CosyVoice3's yaml says ``reg_loss_type: l1``; the code at the pinned
        commit ignores it and uses MSE, and so does this.)"""
        b = x1.shape[0]
        if t is None:
            u01 = torch.rand(b, device=x1.device, dtype=x1.dtype, generator=generator)
            t = t_schedule(u01, self.t_scheduler)
        if z is None:
            z = torch.randn(x1.shape, device=x1.device, dtype=x1.dtype, generator=generator)
        if cfg_keep is None:
            if self.training_cfg_rate > 0:
                cfg_keep = torch.rand(b, device=x1.device, generator=generator) > self.training_cfg_rate
            else:
                cfg_keep = torch.ones(b, dtype=torch.bool, device=x1.device)
        t3 = t.reshape(b, 1, 1).to(x1.dtype)
        y = (1 - (1 - self.sigma_min) * t3) * z + t3 * x1
        u = x1 - (1 - self.sigma_min) * z
        keep = cfg_keep.to(x1.dtype)
        mu, spks, cond = mu * keep.view(-1, 1, 1), spks * keep.view(-1, 1), cond * keep.view(-1, 1, 1)
        pred = self.estimator(y, mask, mu, t3.reshape(b), spks, cond, streaming)
        loss = F.mse_loss(pred * mask, u * mask, reduction="sum") / (mask.sum() * u.shape[1])
        return loss, y


def _lengths_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``[B]`` lengths -> ``[B, max_len]`` bool, True on valid positions."""
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


class CausalFlowMatching(nn.Module):
    """Speech tokens (25 Hz) -> mel (80 bins, 50 Hz); CosyVoice3's ``CausalMaskedDiffWithDiT``.

    The name says what it is: a flow-matching mel generator whose token front end is causal up to a fixed
    look-ahead (and whose attention can be chunk-causal), so it can be run on a growing token stream."""

    def __init__(self, config: FlowConfig | None = None):
        super().__init__()
        self.config = c = config or FlowConfig()
        self.input_embedding = nn.Embedding(c.vocab_size, c.input_size)
        self.spk_embed_affine_layer = nn.Linear(c.spk_embed_dim, c.output_size)
        self.pre_lookahead_layer = PreLookaheadLayer(
            c.input_size, c.pre_lookahead_channels, c.pre_lookahead_len
        )
        self.decoder = CFMDecoder(c)

    # -- inputs ---------------------------------------------------------------------------------------------

    def _check_tokens(self, tokens: torch.Tensor, name: str) -> torch.Tensor:
        if tokens.ndim != 2 or tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise ValueError(
                f"{name} must be an integer tensor [B, N], got {list(tokens.shape)} {tokens.dtype}"
            )
        if tokens.numel() and int(tokens.max()) >= self.config.vocab_size:
            raise ValueError(
                f"{name} has id {int(tokens.max())}; speech tokens are "
                f"0..{self.config.vocab_size - 1} (drop BOS/EOS/pad ids before vocoding)"
            )
        return tokens

    def _speaker(self, embedding: torch.Tensor, batch: int) -> torch.Tensor:
        """x-vector ``[B, 192]`` -> ``[B, 80]`` (L2-normalised, then the affine layer)."""
        want = (batch, self.config.spk_embed_dim)
        if embedding.ndim == 1:
            embedding = embedding.unsqueeze(0).expand(batch, -1)
        if tuple(embedding.shape) != want:
            raise ValueError(f"speaker embedding must be {list(want)}, got {list(embedding.shape)}")
        if not torch.isfinite(embedding).all():
            raise ValueError("speaker embedding has NaN or infinite values")
        weight = self.spk_embed_affine_layer.weight
        return self.spk_embed_affine_layer(F.normalize(embedding.to(weight.dtype), dim=1))

    def encode_tokens(self, tokens: torch.Tensor, lengths: torch.Tensor, finalize: bool = True):
        """Tokens ``[B, N]`` (negative ids, e.g. -1 padding, count as 0) -> ``mu [B, 80, ratio * N']`` and
        mel lengths ``[B]``.

        ``finalize=False`` holds back the last ``pre_lookahead_len`` tokens of each item (context only):
        the look-ahead conv of every kept position then sees real tokens, never the end padding."""
        if tokens.shape[1] == 0:
            empty = self.input_embedding.weight.new_zeros(tokens.shape[0], self.config.input_size, 0)
            return empty, lengths * 0
        valid = _lengths_mask(lengths, tokens.shape[1]).unsqueeze(-1)
        emb = self.input_embedding(tokens.clamp(min=0)) * valid
        h = self.pre_lookahead_layer(emb.to(self.spk_embed_affine_layer.weight.dtype))
        if not finalize:
            lengths = (lengths - self.config.pre_lookahead_len).clamp(min=0)
            h = h[:, : int(lengths.max()) if lengths.numel() else 0]
        h = h.repeat_interleave(self.config.token_mel_ratio, dim=1)
        return h.transpose(1, 2).contiguous(), lengths * self.config.token_mel_ratio

    # -- inference ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def inference(
        self,
        tokens: torch.Tensor,
        embedding: torch.Tensor,
        token_len: torch.Tensor | None = None,
        prompt_token: torch.Tensor | None = None,
        prompt_feat: torch.Tensor | None = None,
        finalize: bool = True,
        streaming: bool = False,
        n_timesteps: int | None = None,
        noise: torch.Tensor | None = None,
        chunks: ChunkPolicy | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens -> mel.

        tokens ``[B, N]`` (ids 0..6560; negative ids count as 0), token_len ``[B]`` (default N);
        embedding ``[B, 192]`` x-vector; prompt_token ``[B, P]`` and prompt_feat ``[B, F, 80]`` (F = 2 P
        normally; shared lengths across the batch) for voice cloning. ``streaming=True`` uses the
        chunk-causal attention mask (CosyVoice ``stream=True``), with chunks of ``static_chunk_size``
        frames or as ``chunks`` says; Fun-Audio-Chat calls with ``False``.
        Returns ``mel [B, 80, T]`` (float32; frames past an item's length are zero) and ``mel_len [B]``:
        ``2 (P + N) - F``, or ``2 (P + N - 3) - F`` with ``finalize=False``, at least 0."""
        c = self.config
        device = self.input_embedding.weight.device
        tokens = self._check_tokens(tokens, "tokens").to(device)
        batch = tokens.shape[0]
        dtype = self.spk_embed_affine_layer.weight.dtype
        if token_len is None:
            token_len = torch.full((batch,), tokens.shape[1], dtype=torch.long, device=device)
        token_len = token_len.to(device=device, dtype=torch.long)
        if prompt_token is None:
            prompt_token = torch.zeros(batch, 0, dtype=torch.long, device=device)
        if prompt_feat is None:
            prompt_feat = torch.zeros(batch, 0, c.output_size, dtype=dtype, device=device)
        prompt_token = self._check_tokens(prompt_token, "prompt_token").to(device)
        if prompt_feat.ndim != 3 or prompt_feat.shape[0] != batch or prompt_feat.shape[2] != c.output_size:
            raise ValueError(
                f"prompt_feat must be [B={batch}, F, {c.output_size}], got {list(prompt_feat.shape)}"
            )
        if prompt_token.shape[0] != batch:
            raise ValueError(f"prompt_token must have batch {batch}, got {list(prompt_token.shape)}")
        spks = self._speaker(embedding.to(device), batch)

        all_tokens = torch.cat((prompt_token, tokens.to(prompt_token.dtype)), dim=1)
        mu, mel_len = self.encode_tokens(all_tokens, token_len + prompt_token.shape[1], finalize)
        n_prompt = prompt_feat.shape[1]
        out_len = (mel_len - n_prompt).clamp(min=0)
        frames = mu.shape[2]
        if frames <= n_prompt or int(out_len.max()) == 0:
            return torch.zeros(batch, c.output_size, 0, device=device), out_len
        cond = torch.zeros(batch, c.output_size, frames, dtype=dtype, device=device)
        cond[:, :, :n_prompt] = prompt_feat.transpose(1, 2).to(dtype)
        mask = _lengths_mask(mel_len, frames).unsqueeze(1).to(dtype)
        mel = self.decoder(mu, mask, spks, cond, n_timesteps or c.n_timesteps, streaming, noise, chunks)
        mel = mel[:, :, n_prompt:]
        mel = mel * _lengths_mask(out_len, mel.shape[2]).unsqueeze(1)
        return mel[:, :, : int(out_len.max())], out_len

    # -- streaming ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def init_state(
        self,
        embedding: torch.Tensor,
        chunk_size: int | None = None,
        context_chunks: int | None = None,
        prompt_token: torch.Tensor | None = None,
        prompt_feat: torch.Tensor | None = None,
        n_timesteps: int | None = None,
        noise: torch.Tensor | None = None,
        chunk_growth: int = 1,
        max_chunk_size: int | None = None,
    ) -> FlowState:
        """A streaming session for B streams that advance together (see ``step``).

        embedding ``[B, 192]`` (or ``[192]``: B = 1); ``chunk_size`` mel frames per chunk (default
        ``static_chunk_size``): the DiT runs once per full chunk, so a chunk of 2 x hop tokens gives one run
        per hop; ``chunk_growth`` / ``max_chunk_size``: each chunk after the first is that many times
        longer, up to that size (fewer, larger DiT runs once the first audio is out; see ``ChunkPolicy``);
        ``context_chunks``: how many earlier chunks a chunk attends to (None: all; bounds memory and time
        on long streams). ``prompt_token [B, P]`` / ``prompt_feat [B, F, 80]``: a voice prompt, as
        in ``inference``. ``noise``: as in ``inference``; a stream longer than the noise reads it again
        from the start."""
        c = self.config
        device, dtype = self.input_embedding.weight.device, self.spk_embed_affine_layer.weight.dtype
        batch = 1 if embedding.ndim == 1 else embedding.shape[0]
        chunk_size = chunk_size or c.static_chunk_size
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive number of mel frames, got {chunk_size}")
        schedule = ChunkPolicy(chunk_size, growth=chunk_growth, max_size=max_chunk_size)
        if context_chunks is not None and context_chunks < 0:
            raise ValueError(f"context_chunks must be >= 0 or None, got {context_chunks}")
        if prompt_feat is None:
            prompt_feat = torch.zeros(batch, 0, c.output_size)
        if prompt_feat.ndim != 3 or prompt_feat.shape[0] != batch or prompt_feat.shape[2] != c.output_size:
            raise ValueError(
                f"prompt_feat must be [B={batch}, F, {c.output_size}], got {list(prompt_feat.shape)}"
            )
        steps = n_timesteps or c.n_timesteps
        state = FlowState(
            spks=self._speaker(embedding.to(device), batch),
            prompt_cond=prompt_feat.to(device=device, dtype=dtype).transpose(1, 2),
            lookahead_context=torch.zeros(batch, c.input_size, 0, device=device, dtype=dtype),
            conv2_context=torch.zeros(batch, c.pre_lookahead_channels, 2, device=device, dtype=dtype),
            embedding_queue=torch.zeros(batch, 0, c.input_size, device=device, dtype=dtype),
            mu=torch.zeros(batch, c.input_size, 0, device=device, dtype=dtype),
            caches=[self.decoder.estimator.init_cache(2 * batch) for _ in range(steps)],
            chunk_size=chunk_size,
            context_chunks=context_chunks,
            noise=self.decoder.rand_noise if noise is None else noise,
            schedule=schedule,
        )
        if prompt_token is not None and prompt_token.numel():
            state = self._feed_tokens(
                self._check_tokens(prompt_token, "prompt_token").to(device), state, False
            )
        return state

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, state: FlowState, finalize: bool = False):
        """The next speech tokens ``[B, n]`` (n >= 0) -> ``(mel [B, 80, m], state)``.

        A token's features wait for 3 tokens of look-ahead, and its 2 frames for the rest of their chunk;
        each full chunk is solved (all Euler steps, with guidance) against the cached keys and values of the
        chunks before it. ``finalize=True`` ends the stream and solves what is left. The mel of all steps
        joined equals ``inference(prompt + all tokens, streaming=True, chunks=ChunkPolicy(chunk_size,
        start=F, context=context_chunks, growth=chunk_growth, max_size=max_chunk_size))`` (to float
        rounding)."""
        if state.finished:
            raise ValueError("this flow stream is finalized; start a new one with init_state()")
        tokens = self._check_tokens(tokens, "tokens").to(self.input_embedding.weight.device)
        if tokens.shape[0] != state.batch_size:
            raise ValueError(f"tokens must be [B={state.batch_size}, n], got {list(tokens.shape)}")
        state = self._feed_tokens(tokens, state, finalize)
        pieces = []
        while True:
            first = state.frames == 0
            need = state.chunk_size + (state.prompt_cond.shape[2] if first else 0)
            ready = state.mu.shape[2]
            if ready == 0 or (ready < need and not finalize):
                break
            mel, state = self._solve_chunk(min(need, ready), state)
            pieces.append(mel)
            state.chunk_size = state.schedule.next_size(state.chunk_size)
        state.finished = finalize
        if not pieces:
            return state.spks.new_zeros(state.batch_size, self.config.output_size, 0).float(), state
        return torch.cat(pieces, dim=2), state

    def _feed_tokens(self, tokens: torch.Tensor, state: FlowState, finalize: bool) -> FlowState:
        """Token ids -> the mu frames they determine (pre-look-ahead layer, streamed), queued in the state."""
        c, layer = self.config, self.pre_lookahead_layer
        emb = self.input_embedding(tokens).to(state.mu.dtype)
        x = emb.transpose(1, 2)
        if finalize:
            x = F.pad(x, (0, c.pre_lookahead_len))
        h, state.lookahead_context = stream_conv(layer.conv1, x, state.lookahead_context)
        h, state.conv2_context = stream_conv(layer.conv2, F.leaky_relu(h), state.conv2_context)
        queue = torch.cat((state.embedding_queue, emb), dim=1)
        n = h.shape[2]
        features = h.transpose(1, 2) + queue[:, :n]
        state.embedding_queue = queue[:, n:]
        mu = features.repeat_interleave(c.token_mel_ratio, dim=1).transpose(1, 2)
        state.mu = torch.cat((state.mu, mu), dim=2)
        return state

    def _solve_chunk(self, n: int, state: FlowState):
        """Solve the next ``n`` queued mu frames as one chunk; returns their mel (prompt frames cut)."""
        b, start = state.batch_size, state.frames
        mu, state.mu = state.mu[:, :, :n], state.mu[:, :, n:]
        # the noise is read by absolute frame, wrapping around past its end (a stream has no length limit)
        frames = torch.arange(start, start + n, device=state.noise.device) % state.noise.shape[2]
        x = state.noise[:, :, frames].to(mu).expand(b, -1, -1)
        n_prompt = state.prompt_cond.shape[2]
        cond = torch.zeros_like(mu)
        if start < n_prompt:
            cond[:, :, : n_prompt - start] = state.prompt_cond[:, :, start : start + n]
        if state.context_chunks is not None and len(state.chunk_lengths) > state.context_chunks:
            state.chunk_lengths = state.chunk_lengths[len(state.chunk_lengths) - state.context_chunks :]
            state.caches = [cache.keep_last(sum(state.chunk_lengths)) for cache in state.caches]
        decoder = self.decoder
        mu_in, cond_in = torch.cat((mu, torch.zeros_like(mu))), torch.cat((cond, torch.zeros_like(cond)))
        spks_in = torch.cat((state.spks, torch.zeros_like(state.spks)))

        def velocity(x, t, index):
            v, state.caches[index] = decoder.estimator.step(
                torch.cat((x, x)), mu_in, t.expand(2 * b), spks_in, cond_in, state.caches[index]
            )
            return decoder.guided(v)

        t_span = decoder.time_span(len(state.caches), mu.device, mu.dtype)
        mel = decoder.euler(x, t_span, velocity).float()
        state.chunk_lengths = state.chunk_lengths + [n]
        state.frames = start + n
        return mel[:, :, max(0, n_prompt - start) :], state

    # -- training -------------------------------------------------------------------------------------------

    def forward(
        self,
        batch: Mapping[str, torch.Tensor],
        streaming: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Training loss for a batch: ``speech_token [B, N]``, ``speech_token_len [B]``,
        ``speech_feat [B, T, 80]`` (target mel), ``speech_feat_len [B]``, ``embedding [B, 192]``.

        As CosyVoice3 trains: half the batches use the chunk-causal mask (``streaming=None`` draws it), and
        each item, with probability 1/2, gets its first ``randint(0, 0.3 * frames)`` target frames as the
        condition. Target frames past ``ratio * N`` are ignored. Returns ``{"loss": scalar}``."""
        device = self.input_embedding.weight.device
        tokens = self._check_tokens(batch["speech_token"].to(device), "speech_token")
        token_len = batch["speech_token_len"].to(device=device, dtype=torch.long)
        feat = batch["speech_feat"].to(device)
        feat_len = batch["speech_feat_len"].to(device=device, dtype=torch.long)
        b = tokens.shape[0]
        spks = self._speaker(batch["embedding"].to(device), b)
        if streaming is None:
            streaming = bool(torch.rand((), generator=generator) < 0.5)

        mu, mel_len = self.encode_tokens(tokens, token_len, finalize=True)
        frames = min(mu.shape[2], feat.shape[1])
        mu, feat = mu[:, :, :frames], feat[:, :frames].to(mu.dtype)
        mel_len = torch.minimum(mel_len, feat_len).clamp(max=frames)

        cond = torch.zeros_like(feat)
        for i in range(b):
            if torch.rand((), generator=generator) < 0.5:
                continue
            n = int(torch.randint(0, int(0.3 * int(mel_len[i])) + 1, (), generator=generator))
            cond[i, :n] = feat[i, :n]
        mask = _lengths_mask(mel_len, frames).unsqueeze(1).to(mu.dtype)
        loss, _ = self.decoder.compute_loss(
            feat.transpose(1, 2).contiguous(),
            mask,
            mu,
            spks,
            cond.transpose(1, 2).contiguous(),
            streaming,
            generator=generator,
        )
        return {"loss": loss}

    # -- weights --------------------------------------------------------------------------------------------

    def check_state_dict(self, state_dict: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
        """Raise ``ValueError`` listing every missing, unexpected and mis-shaped key."""
        check_state_dict(self, state_dict, source)

    def load_official_state_dict(self, state_dict: Mapping[str, torch.Tensor], source: str = "state dict"):
        """Load a CosyVoice3 ``flow`` state dict (no renaming needed) after a strict key/shape check."""
        self.check_state_dict(state_dict, source)
        self.load_state_dict(dict(state_dict), strict=True)
        return self

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, config: FlowConfig | None = None) -> CausalFlowMatching:
        """Build and load from ``flow.safetensors`` or CosyVoice3's ``flow.pt`` (read with
        ``weights_only=True``, never unpickling arbitrary objects)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: flow weights not found")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state_dict = load_file(str(path))
        else:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        return cls(config).load_official_state_dict(state_dict, str(path)).eval()


@dataclass
class FlowState:
    """What ``CausalFlowMatching.step`` carries between token chunks, for B streams.

    ``spks [B, 80]``: the projected speaker; ``prompt_cond [B, 80, F]``: the voice prompt's mel (the
    condition of the first F frames); ``lookahead_context`` / ``conv2_context``: the pre-look-ahead convs'
    input context; ``embedding_queue [B, k, 80]``: token embeddings waiting for their look-ahead (the
    residual); ``mu [B, 80, n]``: token features waiting for their chunk to fill; ``caches``: one
    ``DiTCache`` per Euler step (rows: conditional then unconditional); ``chunk_size``: frames of the next
    chunk (it grows as ``schedule`` says); ``chunk_lengths``: frames of the chunks
    in the caches; ``frames``: frames solved so far (prompt included)."""

    spks: torch.Tensor
    prompt_cond: torch.Tensor
    lookahead_context: torch.Tensor
    conv2_context: torch.Tensor
    embedding_queue: torch.Tensor
    mu: torch.Tensor
    caches: list[DiTCache]
    chunk_size: int
    context_chunks: int | None
    noise: torch.Tensor
    schedule: ChunkPolicy
    chunk_lengths: list[int] = field(default_factory=list)
    frames: int = 0
    finished: bool = False

    @property
    def batch_size(self) -> int:
        return self.spks.shape[0]
