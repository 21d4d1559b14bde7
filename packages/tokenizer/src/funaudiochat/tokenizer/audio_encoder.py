"""The continuous audio encoder (``continuous_audio_tower`` of Fun-Audio-Chat).

A Whisper-large-v3-shaped encoder that attends only inside 2 s chunks:

    log-mel [128, F] (100 Hz), cut into chunks of 2 * n_window frames (the last one holds the rest)
      -> per chunk: GELU(conv1 k3) * mask -> GELU(conv2 k3 stride 2)       [<= n_window, d_model] (50 Hz)
         + sinusoidal positions, restarting at 0 in every chunk
      -> encoder_layers x pre-LN Whisper layer, attention only within a chunk
      -> per audio: chunks joined, avg-pool (2, 2) -> 25 Hz, ln_post, proj -> output_dim

Output length for ``F`` frames: ``L1 = (F - 1) // 2 + 1`` after the convs, ``L2 = (L1 - 2) // 2 + 1``
after pooling (pooling is skipped when ``L1 < 2``, so ``L2 = L1``). Parameter names and shapes are the
official ones, so a Fun-Audio-Chat checkpoint's ``continuous_audio_tower.*`` tensors load unchanged.

Because chunks never see each other, a long utterance costs linear time, and the encoder streams: a
complete chunk can be encoded as soon as its 200 mel frames exist (``init_state`` / ``step``), with
output identical to the offline ``forward``.

Example:
    >>> enc = ContinuousAudioEncoder(AudioEncoderConfig.tiny())
    >>> hidden, lengths = enc(mel, mel_lengths)      # [B, L2max, output_dim], [B]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from funaudiochat.base.streaming import StreamState, ragged, row, shared
from torch import nn


@dataclass
class AudioEncoderConfig:
    """Sizes of the encoder; names follow the official ``FunAudioChatAudioEncoderConfig``."""

    num_mel_bins: int = 128
    d_model: int = 1280
    encoder_layers: int = 32
    encoder_attention_heads: int = 20
    encoder_ffn_dim: int = 5120
    max_source_positions: int = 1500
    n_window: int = 100
    output_dim: int = 4096

    def __post_init__(self) -> None:
        if self.d_model % self.encoder_attention_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by encoder_attention_heads "
                f"({self.encoder_attention_heads})"
            )
        if self.d_model % 2:
            raise ValueError(f"d_model must be even (sinusoidal positions), got {self.d_model}")
        if self.n_window > self.max_source_positions:
            raise ValueError(
                f"n_window ({self.n_window}) cannot exceed max_source_positions ({self.max_source_positions})"
            )

    @property
    def chunk_frames(self) -> int:
        """Mel frames per attention chunk (2 s at the default n_window of 100)."""
        return 2 * self.n_window

    @classmethod
    def tiny(cls) -> AudioEncoderConfig:
        return cls(
            d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128, output_dim=96
        )


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's position table ``[length, channels]``: ``[sin | cos]`` halves."""
    log_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_increment * torch.arange(channels // 2, dtype=torch.float32))
    scaled = torch.arange(length, dtype=torch.float32)[:, None] * inv_timescales[None, :]
    return torch.cat([scaled.sin(), scaled.cos()], dim=1)


def conv_output_length(num_frames: int | torch.Tensor) -> int | torch.Tensor:
    """Frames after the two convolutions (stride 1 then 2): ``(F - 1) // 2 + 1`` (0 for F = 0)."""
    if isinstance(num_frames, torch.Tensor):
        return torch.where(num_frames > 0, (num_frames - 1) // 2 + 1, 0)
    return (num_frames - 1) // 2 + 1 if num_frames > 0 else 0


def output_length(num_frames: int | torch.Tensor) -> int | torch.Tensor:
    """Encoder output frames (25 Hz) for ``num_frames`` mel frames (100 Hz)."""
    l1 = conv_output_length(num_frames)
    if isinstance(l1, torch.Tensor):
        return torch.where(l1 >= 2, (l1 - 2) // 2 + 1, l1)
    return (l1 - 2) // 2 + 1 if l1 >= 2 else l1


class EncoderAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """``x [N, T, D]``, ``key_mask [N, T]`` (True = valid) -> ``[N, T, D]``; attention within a row."""
        n, t, d = x.shape
        hd = d // self.n_heads

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(n, t, self.n_heads, hd).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
        return self.out_proj(out.transpose(1, 2).reshape(n, t, d))


class EncoderLayer(nn.Module):
    """Pre-LN Whisper encoder layer (GELU MLP)."""

    def __init__(self, config: AudioEncoderConfig):
        super().__init__()
        d = config.d_model
        self.self_attn = EncoderAttention(d, config.encoder_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, config.encoder_ffn_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x), key_mask)
        x = x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
        if x.dtype == torch.float16:
            limit = torch.finfo(x.dtype).max - 1000
            x = x.clamp(-limit, limit)
        return x


@dataclass
class EncoderStreamState(StreamState):
    """Streaming state of B audio streams (``funaudiochat.base.streaming``): mel frames received but not
    yet encoded ``pending [B, n_mels, P]`` (``P < chunk``; ``pending_lengths [B]`` of them valid per row),
    how many frames each row has encoded (``consumed [B]``), and whether ``finalize`` was given."""

    pending: torch.Tensor = ragged(dim=2)
    pending_lengths: torch.Tensor = row()
    consumed: torch.Tensor = row()
    finished: bool = shared(default=False)


class ContinuousAudioEncoder(nn.Module):
    """Chunked Whisper-style encoder: log-mel (100 Hz) -> ``output_dim`` features at 25 Hz."""

    def __init__(self, config: AudioEncoderConfig | None = None):
        super().__init__()
        self.config = config = config or AudioEncoderConfig()
        d = config.d_model
        self.conv1 = nn.Conv1d(config.num_mel_bins, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.register_buffer(
            "positional_embedding", sinusoids(config.max_source_positions, d), persistent=False
        )
        self.audio_bos_eos_token = nn.Embedding(2, config.output_dim)  # in official weights, unused
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.encoder_layers))
        self.ln_post = nn.LayerNorm(d)
        self.avg_pooler = nn.AvgPool1d(2, stride=2)
        self.proj = nn.Linear(d, config.output_dim)

    # ---- offline -------------------------------------------------------------------------------
    def forward(
        self, input_features: torch.Tensor, feature_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``input_features [B, n_mels, F]``, ``feature_lengths [B]`` -> ``(hidden [B, L2max, output_dim],
        lengths [B])`` with ``lengths = output_length(feature_lengths)``; rows past a length are zero."""
        if input_features.ndim != 3 or input_features.shape[1] != self.config.num_mel_bins:
            raise ValueError(
                f"input_features must be [batch, {self.config.num_mel_bins}, frames], "
                f"got {tuple(input_features.shape)}"
            )
        lengths = feature_lengths.to(torch.long).cpu()
        if (lengths < 0).any() or (lengths > input_features.shape[-1]).any():
            raise ValueError(
                f"feature_lengths must lie in [0, {input_features.shape[-1]}], got {lengths.tolist()}"
            )
        per_item = self.encode_chunks([input_features[i, :, : int(n)] for i, n in enumerate(lengths)])
        outputs = [self.pool_and_project(h) for h in per_item]
        out_lengths = torch.tensor([o.shape[0] for o in outputs], dtype=torch.long)
        hidden = torch.nn.utils.rnn.pad_sequence(outputs, batch_first=True)
        if hidden.shape[1] == 0:
            hidden = input_features.new_zeros(len(outputs), 0, self.config.output_dim)
        return hidden, out_lengths

    def encode_chunks(self, mels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Run the convolutions and layers over each mel ``[n_mels, F_i]`` cut into chunks
        -> per item ``[L1_i, d_model]`` (50 Hz). All chunks of all items run as one batch."""
        chunk = self.config.chunk_frames
        pieces, owner = [], []
        for i, mel in enumerate(mels):
            for start in range(0, mel.shape[-1], chunk):
                pieces.append(mel[:, start : start + chunk])
                owner.append(i)
        d = self.config.d_model
        if not pieces:
            return [mels[0].new_zeros(0, d) for _ in mels]
        piece_lengths = torch.tensor([p.shape[-1] for p in pieces])
        width = int(piece_lengths.max())
        batch = torch.stack([F.pad(p, (0, width - p.shape[-1])) for p in pieces])  # [N, n_mels, W]
        frame_mask = torch.arange(width)[None, :] < piece_lengths[:, None]
        x = F.gelu(self.conv1(batch)) * frame_mask[:, None, :].to(batch.device, batch.dtype)
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # [N, W', D]
        x = x + self.positional_embedding[: x.shape[1]].to(x.dtype)
        after = conv_output_length(piece_lengths)
        key_mask = (torch.arange(x.shape[1])[None, :] < after[:, None]).to(x.device)
        for layer in self.layers:
            x = layer(x, key_mask)
        results: list[list[torch.Tensor]] = [[] for _ in mels]
        for j, i in enumerate(owner):
            results[i].append(x[j, : int(after[j])])
        return [torch.cat(r) if r else x.new_zeros(0, d) for r in results]

    def pool_and_project(self, hidden: torch.Tensor, utterance_start: bool = True) -> torch.Tensor:
        """``[L1, d_model]`` (50 Hz) -> ``[L2, output_dim]`` (25 Hz): avg-pool(2), ``ln_post``, ``proj``.

        Pooling is skipped for a single frame at the start of an utterance (as the official encoder
        does for ``L1 < 2``); a lone frame later in a stream is dropped, as pooling the whole would."""
        if hidden.shape[0] >= 2:
            hidden = self.avg_pooler(hidden.T.unsqueeze(0))[0].T
        elif not utterance_start:
            hidden = hidden[:0]
        return self.proj(self.ln_post(hidden))

    # ---- streaming -----------------------------------------------------------------------------
    def init_state(self, batch_size: int = 1, device=None) -> EncoderStreamState:
        """A fresh state for ``batch_size`` streams (see ``step``)."""
        return EncoderStreamState(
            pending=torch.zeros(batch_size, self.config.num_mel_bins, 0, device=device),
            pending_lengths=torch.zeros(batch_size, dtype=torch.long),
            consumed=torch.zeros(batch_size, dtype=torch.long),
        )

    def step(
        self,
        mel: torch.Tensor,
        state: EncoderStreamState,
        finalize: bool = False,
        lengths: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Feed the next mel frames of every stream; ``state`` is updated in place.

        mel: ``[B, n_mels, T]`` log-mel at 100 Hz (T may be 0);
        lengths: ``[B]`` valid frames of each row (default: all T);
        finalize: encode the remaining partial chunk too and end the streams.
        Returns per row the 25 Hz features ``[n, output_dim]`` of every chunk this input completed (often
        empty). The concatenated outputs of a stream equal ``forward`` on the whole utterance; rows may be
        at different positions (``StreamState.cat`` of streams that started at different times)."""
        if state.finished:
            raise ValueError("this audio-encoder stream is finalized; start a new one with init_state()")
        chunk = self.config.chunk_frames
        batch = mel.shape[0]
        if mel.ndim != 3 or mel.shape[1] != self.config.num_mel_bins or batch != state.batch_size:
            want = f"[B={state.batch_size}, {self.config.num_mel_bins}, frames]"
            raise ValueError(f"mel must be {want}, got {list(mel.shape)}")
        if lengths is None:
            lengths = torch.full((batch,), mel.shape[-1], dtype=torch.long)
        ready, leftovers = [], []
        for i in range(batch):
            have = state.pending[i, :, : int(state.pending_lengths[i])]
            frames = torch.cat([have.to(mel.dtype), mel[i, :, : int(lengths[i])]], dim=-1)
            cut = frames.shape[-1] if finalize else (frames.shape[-1] // chunk) * chunk
            ready.append(frames[:, :cut])
            leftovers.append(frames[:, cut:])
        encoded = self.encode_chunks(ready)
        outputs = [
            self.pool_and_project(h, utterance_start=bool(state.consumed[i] == 0))
            for i, h in enumerate(encoded)
        ]
        widths = torch.tensor([lf.shape[-1] for lf in leftovers], dtype=torch.long)
        state.pending = torch.stack([F.pad(lf, (0, int(widths.max()) - lf.shape[-1])) for lf in leftovers])
        state.pending_lengths = widths
        state.consumed = state.consumed + torch.tensor([r.shape[-1] for r in ready], dtype=torch.long)
        state.finished = finalize
        return outputs
