"""The velocity estimator of the flow: CosyVoice3's causal DiT (``decoder.estimator``).

    x, cond, mu [B, 80, T], speaker [B, 80], time t [B]
      -> proj(cat) + causal conv position embedding              [B, T, dim]
      -> depth x DiTBlock (AdaLN-zero modulated by t; rotary on the first head's channels)
      -> AdaLN-zero final norm -> proj_out                        velocity [B, 80, T]

``forward`` runs a whole sequence (full or chunk-causal attention); ``step`` runs the next frames of a
stream against a ``DiTCache`` (position-conv contexts, key/value buffers): one chunk of the chunk-causal
``forward``. Parameter names are those of CosyVoice3's ``decoder.estimator`` state dict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .chunks import ChunkPolicy, attention_mask
from .conv import Conv1d
from .dit_cache import DiTCache, KVBuffer
from .kept import kept
from .streaming import stream_conv


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

    def forward(self, x: torch.Tensor, contexts: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``x [B, T, dim]``; ``contexts``: a stream's carried inputs of the two convs ``[B, dim, kernel -
        1]`` each (updated in place), or None for a whole sequence (zero left padding, the same as a fresh
        stream's zero contexts)."""
        h = x.transpose(1, 2)
        for i, (conv, mish) in enumerate((self.conv1, self.conv2)):
            if contexts is None:
                h = conv.convolve(h, (self.kernel_size - 1, 0))
            else:
                h, contexts[i] = stream_conv(conv, h, contexts[i])
            h = mish(h)
        return h.transpose(1, 2)


class InputEmbedding(nn.Module):
    """``proj(cat[x, cond, mu, spk])`` plus its causal conv position embedding; all ``[B, T, *]``."""

    def __init__(self, mel_dim: int, mu_dim: int, spk_dim: int, dim: int, kernel_size: int, groups: int):
        super().__init__()
        self.proj = nn.Linear(2 * mel_dim + mu_dim + spk_dim, dim)
        self.conv_pos_embed = CausalConvPositionEmbedding(dim, kernel_size, groups)

    def forward(self, x, cond, mu, spk, contexts: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``contexts``: the position convs' stream contexts (see ``CausalConvPositionEmbedding``)."""
        spk = spk.unsqueeze(1).expand(-1, x.shape[1], -1)
        h = self.proj(torch.cat((x, cond, mu, spk), dim=-1))
        return self.conv_pos_embed(h, contexts) + h


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
    """The rotary turns ``exp(i angle)`` ``[T, R/2]`` (complex64): one per position and channel pair; or
    ``[B, T, R/2]`` when the rows of a batch are at different positions."""

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
    head.copy_(torch.view_as_real(pairs * rope.turn.unsqueeze(-2)).flatten(-2))
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
        says. The same computation as ``step`` runs chunk by chunk (see there)."""
        if t.ndim == 0:
            t = t.repeat(x.shape[0])
        valid = mask.bool()
        if streaming:
            attn_mask = attention_mask(valid, chunks or ChunkPolicy(self.static_chunk_size))
        elif bool(valid.all()):  # no padding: plain full attention, nothing to zero
            attn_mask, valid = None, None
        else:
            attn_mask = attention_mask(valid)
        return self._run(x, mu, t, spks, cond, attn_mask, None if valid is None else valid[:, 0], None)

    def step(self, x, mu, t, spks, cond, cache: DiTCache) -> torch.Tensor:
        """The next ``n`` frames of a stream -> their velocity ``[B, mel, n]``; ``cache`` (the frames
        before: position-conv inputs, keys and values, rotary position) is updated in place.

        x, mu, cond: ``[B, C, n]``; t: ``[B]``; spks: ``[B, spk]``. The n frames see each other and every
        cached frame: one chunk of the chunk-causal ``forward``, by the same code. Trim ``cache``
        (``DiTCache.keep_last``) to bound the context."""
        velocity = self._run(x, mu, t, spks, cond, None, None, cache)
        cache.position += x.shape[2]
        return velocity

    def step_many(self, x, mu, t, spks, cond, caches: list[DiTCache], lengths: list[int]) -> torch.Tensor:
        """The next frames of streams at different positions, in one run: rows ``x, mu, cond [R, C, N]``,
        ``t [R]`` and ``spks [R, spk]`` hold each group's rows in turn (group g: the rows of ``caches[g]``,
        its ``lengths[g]`` new frames first, then padding). Returns the velocity ``[R, mel, N]`` (padding
        columns meaningless); each cache is updated in place as ``step`` updates it with its group's frames,
        and each group's velocity equals ``step``'s to float rounding."""
        x, mu, cond = x.transpose(1, 2), mu.transpose(1, 2), cond.transpose(1, 2)
        n_max, sizes = x.shape[1], [cache.conv[0].shape[0] for cache in caches]
        groups = list(zip(caches, sizes, lengths, strict=True))
        embed = self.input_embed
        h = embed.proj(torch.cat((x, cond, mu, spks.unsqueeze(1).expand(-1, n_max, -1)), dim=-1))
        z = h.transpose(1, 2)
        pos = embed.conv_pos_embed
        for i, (conv, mish) in enumerate((pos.conv1, pos.conv2)):
            z = torch.cat((torch.cat([cache.conv[i] for cache in caches]), z), dim=2)
            start = 0
            for cache, rows, n in groups:  # each group keeps the inputs its next frames need
                cache.conv[i] = z[start : start + rows, :, n : n + pos.kernel_size - 1]
                start += rows
            z = mish(conv.convolve(z))
        h = z.transpose(1, 2) + h
        positions = torch.cat(
            [
                cache.position + torch.arange(n_max, device=x.device).expand(rows, -1)
                for cache, rows, _ in groups
            ]
        )
        angles = positions.unsqueeze(-1).to(self.rotary_embed.inv_freq) * self.rotary_embed.inv_freq
        rope = Rotary(torch.polar(torch.ones_like(angles), angles))
        longest = max(len(cache.kv[0]) for cache in caches)
        keys_valid = torch.cat(
            [
                torch.cat(
                    (
                        torch.arange(longest, device=x.device) >= longest - len(cache.kv[0]),
                        torch.arange(n_max, device=x.device) < n,
                    )
                ).expand(rows, -1)
                for cache, rows, n in groups
            ]
        )
        attn_mask = keys_valid[:, None, None, :]
        modulations = self.modulations(t)
        for index, (block, modulation) in enumerate(zip(self.transformer_blocks, modulations, strict=False)):
            past = _RaggedPast([(cache.kv[index], rows, n) for cache, rows, n in groups], longest)
            h, _ = block(h, modulation, attn_mask, rope, None, past)
        for cache, _, n in groups:
            cache.position += n
        return self.proj_out(self.norm_out(h, modulations[-1])).transpose(1, 2)

    def _run(self, x, mu, t, spks, cond, attn_mask, valid, cache: DiTCache | None) -> torch.Tensor:
        """The estimator over ``x, mu, cond [B, C, T]``: a whole sequence (``cache`` None; ``attn_mask``
        ``[B, 1, T, T]`` and ``valid [B, T]`` or None) or the next frames of a stream after ``cache``."""
        x, mu, cond = x.transpose(1, 2), mu.transpose(1, 2), cond.transpose(1, 2)
        modulations = self.modulations(t)
        h = self.input_embed(x, cond, mu, spks, None if cache is None else cache.conv)
        rope = self.rotary_embed(h.shape[1], offset=0 if cache is None else cache.position)
        buffers = [None] * len(self.transformer_blocks) if cache is None else cache.kv
        for block, modulation, kv in zip(self.transformer_blocks, modulations, buffers, strict=False):
            h, _ = block(h, modulation, attn_mask, rope, valid, kv)
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


class _RaggedPast:
    """The keys and values before the new frames of several groups of rows (``KVBuffer`` s of different
    lengths, left-padded to ``longest``): ``extend`` returns them joined with the new ones (what
    ``Attention`` attends to) and appends each group's real new frames to its buffer."""

    def __init__(self, groups: list[tuple[KVBuffer, int, int]], longest: int):
        self.groups, self.longest = groups, longest

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        past_k, past_v, start = [], [], 0
        for buffer, rows, n in self.groups:
            kept_k, kept_v = buffer.live()
            pad = (0, 0, self.longest - kept_k.shape[2], 0)
            past_k.append(F.pad(kept_k, pad))
            past_v.append(F.pad(kept_v, pad))
            buffer.extend(k[start : start + rows, :, :n], v[start : start + rows, :, :n])
            start += rows
        return torch.cat((torch.cat(past_k), k), dim=2), torch.cat((torch.cat(past_v), v), dim=2)
