"""The 25 Hz speech tokenizer, compatible with S3Tokenizer V2 and V3 (CosyVoice2 / CosyVoice3).

Architecture (the ``s3tokenizer`` package's ``S3TokenizerV2`` / ``S3TokenizerV3``, same state-dict keys):

    log-mel [128, T] (100 Hz)
      -> conv1 (k3, stride 2) + GELU -> conv2 (k3, stride 2) + GELU          [T/4, D]  (25 Hz)
      -> n_layer x pre-LN block:  x += out(attn(q, k, v)) + FSMN(v);  x += MLP(x)
           attention: RoPE on q, k (rotate-half, theta 1e4), head size 64
           FSMN: depthwise Conv1d (k31, zero "same" padding) over v, plus v
      -> FSQ: Linear(D -> 8) -> tanh -> x0.999 -> round -> +1 in {0,1,2};  code = sum_i h_i 3^i

V2 has 6 blocks, V3 12; otherwise the two are the same network. Codes lie in [0, 6561).

Batches are computed without padding: linear layers run on the concatenation of all items, while
attention and FSMN run item by item. So a batch gives each item the codes it gets alone, and the cost
follows the total audio length, not batch size x longest item. Audio longer than 30 s is windowed
(``windowing.plan_windows``) with no token lost or duplicated.

Example:
    >>> tok = SpeechTokenizer.from_s3tokenizer_state_dict(s3_model.state_dict())
    >>> codes = tok.encode([load_audio("a.wav"), load_audio("b.wav")])   # list of LongTensor [n_i]
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from funaudiochat.base.rng import seeded
from torch import nn

from .frontend import WhisperFrontend
from .weights import load_state_dict_strict, read_safetensors, write_safetensors
from .windowing import DEFAULT_OVERLAP_FRAMES, DEFAULT_WINDOW_FRAMES, plan_windows

FSQ_LEVELS = 3
FSQ_DIMS = 8
CODEBOOK_SIZE = FSQ_LEVELS**FSQ_DIMS  # 6561
# The float32 value of 0.999 that the reference graph multiplies by.
_FSQ_SHRINK = 0.9990000128746033


@dataclass
class SpeechTokenizerConfig:
    """Sizes of the speech tokenizer; field names follow ``s3tokenizer.model_v2.ModelConfig``."""

    n_mels: int = 128
    n_audio_state: int = 1280
    n_audio_head: int = 20
    n_audio_layer: int = 12
    fsmn_kernel_size: int = 31
    rope_theta: float = 10000.0
    window_frames: int = DEFAULT_WINDOW_FRAMES
    overlap_frames: int = DEFAULT_OVERLAP_FRAMES

    def __post_init__(self) -> None:
        if self.n_audio_state % self.n_audio_head:
            raise ValueError(
                f"n_audio_state ({self.n_audio_state}) must be divisible by "
                f"n_audio_head ({self.n_audio_head})"
            )
        if (self.n_audio_state // self.n_audio_head) % 2:
            raise ValueError("the head size n_audio_state / n_audio_head must be even (rotary embedding)")

    @property
    def head_dim(self) -> int:
        return self.n_audio_state // self.n_audio_head

    @classmethod
    def v2(cls) -> SpeechTokenizerConfig:
        """``speech_tokenizer_v2_25hz`` (CosyVoice2): 6 blocks of width 1280."""
        return cls(n_audio_layer=6)

    @classmethod
    def v3(cls) -> SpeechTokenizerConfig:
        """``speech_tokenizer_v3_25hz`` (CosyVoice3, used by Fun-Audio-Chat): 12 blocks of width 1280."""
        return cls(n_audio_layer=12)

    @classmethod
    def tiny(cls) -> SpeechTokenizerConfig:
        """A small config for tests and the demo (head size kept at the reference's 64)."""
        return cls(n_audio_state=128, n_audio_head=2, n_audio_layer=2)


def rotary_cos_sin(length: int, dim: int, theta: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos``/``sin`` tables ``[length, dim]`` for rotate-half RoPE (frequencies repeated twice)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim))
    angles = torch.outer(torch.arange(length, dtype=torch.float32, device=device), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [T, H, dim]`` by position: ``x cos + rotate_half(x) sin``."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[:, None, :] + rotated * sin[:, None, :]


class FSMNAttention(nn.Module):
    """Multi-head self-attention with RoPE plus an FSMN memory over the values.

    Works on packed sequences: ``forward(x [N, D], spans)`` where ``spans`` lists ``(start, length)`` of
    each sequence in ``x``; attention never crosses sequences.
    """

    def __init__(self, n_state: int, n_head: int, kernel_size: int):
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state, bias=False)
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)
        self.fsmn_block = nn.Conv1d(n_state, n_state, kernel_size, groups=n_state, bias=False)
        self.left_padding = (kernel_size - 1) // 2
        self.right_padding = kernel_size - 1 - self.left_padding

    def forward(
        self, x: torch.Tensor, spans: list[tuple[int, int]], cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        n, d = x.shape
        head_dim = d // self.n_head
        q = self.query(x).view(n, self.n_head, head_dim)
        k = self.key(x).view(n, self.n_head, head_dim)
        v = self.value(x)
        mixed, memory = [], []
        for start, length in spans:
            rows = slice(start, start + length)
            c, s = cos[:length], sin[:length]
            qi = apply_rotary(q[rows], c, s).transpose(0, 1)  # [H, T, hd]
            ki = apply_rotary(k[rows], c, s).transpose(0, 1)
            vi = v[rows].view(length, self.n_head, head_dim).transpose(0, 1)
            attended = F.scaled_dot_product_attention(qi.unsqueeze(0), ki.unsqueeze(0), vi.unsqueeze(0))
            mixed.append(attended[0].transpose(0, 1).reshape(length, d))
            memory.append(self.fsmn(v[rows]))
        mixed = mixed[0] if len(mixed) == 1 else torch.cat(mixed)
        memory = memory[0] if len(memory) == 1 else torch.cat(memory)
        return self.out(mixed) + memory

    def fsmn(self, v: torch.Tensor) -> torch.Tensor:
        """FSMN memory of one sequence ``v [T, D]``: depthwise conv with zero "same" padding, plus ``v``."""
        seq = v.T.unsqueeze(0)
        if self.left_padding == self.right_padding:
            filtered = F.conv1d(seq, self.fsmn_block.weight, padding=self.left_padding, groups=seq.shape[1])
        else:
            filtered = self.fsmn_block(F.pad(seq, (self.left_padding, self.right_padding)))
        return filtered[0].T + v


class ResidualAttentionBlock(nn.Module):
    def __init__(self, n_state: int, n_head: int, kernel_size: int):
        super().__init__()
        self.attn = FSMNAttention(n_state, n_head, kernel_size)
        self.attn_ln = nn.LayerNorm(n_state, eps=1e-5)
        self.mlp = nn.Sequential(nn.Linear(n_state, 4 * n_state), nn.GELU(), nn.Linear(4 * n_state, n_state))
        self.mlp_ln = nn.LayerNorm(n_state, eps=1e-5)

    def forward(self, x, spans, cos, sin):
        x = x + self.attn(self.attn_ln(x), spans, cos, sin)
        return x + self.mlp(self.mlp_ln(x))


class SpeechEncoder(nn.Module):
    """Conv front and FSMN-attention blocks: mel segments -> 25 Hz hidden states (packed)."""

    def __init__(self, config: SpeechTokenizerConfig):
        super().__init__()
        self.config = config
        d = config.n_audio_state
        self.conv1 = nn.Conv1d(config.n_mels, d, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.blocks = nn.ModuleList(
            ResidualAttentionBlock(d, config.n_audio_head, config.fsmn_kernel_size)
            for _ in range(config.n_audio_layer)
        )
        self._rope_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def _rope(self, length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        cache = self._rope_cache
        if cache is None or cache[0].shape[0] < length or cache[0].device != device:
            size = max(length, 1024)
            cache = rotary_cos_sin(size, self.config.head_dim, self.config.rope_theta, device)
            self._rope_cache = cache
        return cache

    def forward(self, mels: list[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """``mels``: list of ``[n_mels, T_i]`` -> packed hidden ``[sum L_i, D]`` and ``(start, L_i)`` spans,
        ``L_i = ceil(T_i / 4)``. Zero-length segments give zero-length spans."""
        pieces = []
        for mel in mels:
            if mel.shape[-1] == 0:
                pieces.append(mel.new_zeros(0, self.config.n_audio_state))
                continue
            h = F.gelu(self.conv1(mel.unsqueeze(0)))
            h = F.gelu(self.conv2(h))
            pieces.append(h[0].T)
        spans, start = [], 0
        for p in pieces:
            spans.append((start, p.shape[0]))
            start += p.shape[0]
        x = torch.cat(pieces, dim=0)
        if x.shape[0] == 0:
            return x, spans
        cos, sin = self._rope(max(length for _, length in spans), x.device)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        for block in self.blocks:
            x = block(x, spans, cos, sin)
        return x, spans


class FSQCodebook(nn.Module):
    """Finite scalar quantizer: 8 dimensions, 3 levels each (6561 codes)."""

    def __init__(self, dim: int):
        super().__init__()
        self.project_down = nn.Linear(dim, FSQ_DIMS)

    def levels(self, x: torch.Tensor) -> torch.Tensor:
        """Per-dimension levels in {0, 1, 2}, ``[..., 8]`` (float)."""
        h = self.project_down(x).float().tanh() * _FSQ_SHRINK
        return h.round() + 1

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden ``[..., D]`` -> codes ``[...]`` (long), ``code = sum_i level_i * 3^i``."""
        return levels_to_codes(self.levels(x))


class FSQQuantizer(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self._codebook = FSQCodebook(dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._codebook.encode(x)


def levels_to_codes(levels: torch.Tensor) -> torch.Tensor:
    """``[..., 8]`` levels in {0,1,2} -> ``[...]`` codes in [0, 6561)."""
    powers = FSQ_LEVELS ** torch.arange(FSQ_DIMS, device=levels.device, dtype=torch.float32)
    return (levels.float() * powers).sum(-1).round().long()


def codes_to_levels(codes: torch.Tensor) -> torch.Tensor:
    """Inverse of ``levels_to_codes``: ``[...]`` codes -> ``[..., 8]`` levels (long)."""
    if codes.numel() and (codes.min() < 0 or codes.max() >= CODEBOOK_SIZE):
        raise ValueError(f"codes must lie in [0, {CODEBOOK_SIZE}), got range [{codes.min()}, {codes.max()}]")
    powers = FSQ_LEVELS ** torch.arange(FSQ_DIMS, device=codes.device)
    return (codes.long().unsqueeze(-1) // powers) % FSQ_LEVELS


class SpeechTokenizer(nn.Module):
    """16 kHz speech -> 25 Hz codes in [0, 6561). State-dict keys are those of ``s3tokenizer``."""

    def __init__(self, config: SpeechTokenizerConfig | None = None):
        super().__init__()
        self.config = config or SpeechTokenizerConfig.v3()
        self.frontend = WhisperFrontend(self.config.n_mels)
        self.encoder = SpeechEncoder(self.config)
        self.quantizer = FSQQuantizer(self.config.n_audio_state)

    # ---- construction and weights -------------------------------------------------------------
    @classmethod
    def from_s3tokenizer_state_dict(
        cls, state_dict: dict[str, torch.Tensor], source: str = "state dict"
    ) -> SpeechTokenizer:
        """Build a tokenizer whose size is read off an ``s3tokenizer`` V2/V3 state dict, and load it."""
        try:
            n_state, n_mels, _ = state_dict["encoder.conv1.weight"].shape
        except KeyError as err:
            raise ValueError(
                f"{source}: no 'encoder.conv1.weight'; not an s3tokenizer V2/V3 state dict"
            ) from err
        blocks = {int(k.split(".")[2]) for k in state_dict if k.startswith("encoder.blocks.")}
        kernel = state_dict["encoder.blocks.0.attn.fsmn_block.weight"].shape[-1] if blocks else 31
        # The s3tokenizer package hard-codes a rotary table of size 64, i.e. a head size of 64.
        config = SpeechTokenizerConfig(
            n_mels=n_mels,
            n_audio_state=n_state,
            n_audio_head=max(n_state // 64, 1),
            n_audio_layer=len(blocks),
            fsmn_kernel_size=kernel,
        )
        model = cls(config)
        load_state_dict_strict(model, state_dict, source)
        return model

    @classmethod
    def from_safetensors(cls, path: str | os.PathLike) -> SpeechTokenizer:
        """Load weights written by ``save_safetensors`` (config in the metadata), or a bare s3tokenizer
        state dict saved as safetensors (config read off the shapes)."""
        tensors, metadata = read_safetensors(path)
        if "config" in metadata:
            model = cls(SpeechTokenizerConfig(**json.loads(metadata["config"])))
            load_state_dict_strict(model, tensors, str(path))
            return model
        return cls.from_s3tokenizer_state_dict(tensors, source=str(path))

    def save_safetensors(self, path: str | os.PathLike) -> None:
        write_safetensors(path, self.state_dict(), asdict(self.config))

    @classmethod
    def random(cls, config: SpeechTokenizerConfig | None = None, seed: int = 0) -> SpeechTokenizer:
        """A tokenizer with seeded random weights (tests, and the CLI when no weights are given)."""
        with seeded(seed):
            model = cls(config or SpeechTokenizerConfig.tiny())
        return model.eval()

    # ---- inference ----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.quantizer._codebook.project_down.weight.device

    @torch.inference_mode()
    def encode(self, waveforms: list[torch.Tensor] | torch.Tensor) -> list[torch.Tensor]:
        """16 kHz mono waveforms (a list of 1-D tensors, or one 1-D tensor) -> a list of code tensors.

        Item ``i`` gets exactly ``windowing.code_count(len(waveforms[i]))`` codes, whatever its length
        and whatever else is in the batch.
        """
        if isinstance(waveforms, torch.Tensor):
            if waveforms.ndim != 1:
                raise ValueError(f"a single waveform must be 1-D, got shape {tuple(waveforms.shape)}")
            waveforms = [waveforms]
        if len(waveforms) == 0:
            return []
        device = self.device
        mel, mel_lengths = self.frontend.batch([w.to(device) for w in waveforms])
        return self.encode_mel([mel[i, :, : int(n)] for i, n in enumerate(mel_lengths)])

    @torch.inference_mode()
    def encode_mel(self, mels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Log-mel ``[n_mels, T_i]`` per item -> codes ``[ceil(T_i / 4)]`` per item (windowed past 30 s)."""
        segments, owners = [], []
        for item, mel in enumerate(mels):
            if mel.ndim != 2 or mel.shape[0] != self.config.n_mels:
                raise ValueError(f"mel {item} must be [{self.config.n_mels}, frames], got {tuple(mel.shape)}")
            for window in plan_windows(mel.shape[1], self.config.window_frames, self.config.overlap_frames):
                segments.append(mel[:, window.start_frame : window.start_frame + window.num_frames])
                owners.append((item, window))
        dtype = self.quantizer._codebook.project_down.weight.dtype
        hidden, spans = self.encoder([s.to(dtype) for s in segments])
        codes = self.quantizer.encode(hidden)
        pieces: list[list[torch.Tensor]] = [[] for _ in mels]
        for (item, window), (start, _) in zip(owners, spans, strict=True):
            first = start + window.keep_start - window.start_token
            pieces[item].append(codes[first : first + window.keep_end - window.keep_start])
        return [torch.cat(p) if p else codes.new_zeros(0) for p in pieces]

    @torch.inference_mode()
    def quantize(self, mel: torch.Tensor, mel_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``s3tokenizer`` call shape: ``mel [B, n_mels, T]``, lengths ``[B]`` -> codes ``[B, L]``
        (zero-padded) and code lengths ``[B]``."""
        items = [mel[i, :, : int(n)] for i, n in enumerate(mel_lengths.tolist())]
        codes = self.encode_mel(items)
        lengths = torch.tensor([c.shape[0] for c in codes], dtype=torch.long)
        padded = torch.nn.utils.rnn.pad_sequence(codes, batch_first=True) if codes else torch.zeros(0, 0)
        return padded.long(), lengths

    def extra_repr(self) -> str:
        c = self.config
        params = sum(p.numel() for p in self.parameters())
        return f"layers={c.n_audio_layer}, width={c.n_audio_state}, heads={c.n_audio_head}, params={params}"
