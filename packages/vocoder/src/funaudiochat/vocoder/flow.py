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

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from funaudiochat.base.streaming import Cohorts, StreamState, row, shared
from funaudiochat.base.weights import check_state_dict
from torch import nn

from .cfm import CFMDecoder
from .chunks import ChunkPolicy
from .conv import Conv1d
from .dit_cache import DiTCache
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
            self._feed_tokens(self._check_tokens(prompt_token, "prompt_token").to(device), state, False)
        return state

    @torch.no_grad()
    def step(
        self,
        tokens: torch.Tensor | Sequence[torch.Tensor],
        state: FlowState | Cohorts,
        finalize: bool = False,
    ) -> list[torch.Tensor]:
        """The next speech tokens of every row -> per row the mel frames they complete ``[80, m]`` (often
        m = 0); ``state`` is updated in place (the streaming contract of ``funaudiochat.base``).

        tokens: ``[B, n]`` (n >= 0), or for a ``Cohorts`` state one 1-D tensor per row (rows may get
        different numbers; their cohorts split); state: a lockstep ``FlowState`` from ``init_state``, or
        ``Cohorts`` of them (sessions at different positions, see ``StreamState.cat``).

        A token's features wait for 3 tokens of look-ahead, and its 2 frames for the rest of their chunk;
        each full chunk is solved (all Euler steps, with guidance) against the cached keys and values of the
        chunks before it. ``finalize=True`` ends the stream and solves what is left. The mel of all steps
        joined equals ``inference(prompt + all tokens, streaming=True, chunks=ChunkPolicy(chunk_size,
        start=F, context=context_chunks, growth=chunk_growth, max_size=max_chunk_size))`` (to float
        rounding)."""
        if isinstance(state, Cohorts):
            rows = [torch.as_tensor(t).reshape(-1) for t in tokens]
            for part, group in state.parts(rows):
                self.feed(part, group, finalize)
            return state.gather(self.solve_ready(state.groups, finalize))
        return list(self._step_lockstep(tokens, state, finalize).unbind(0))

    def _step_lockstep(self, tokens: torch.Tensor, state: FlowState, finalize: bool) -> torch.Tensor:
        """``step`` for one lockstep state: tokens ``[B, n]`` -> mel ``[B, 80, m]``."""
        self.feed(tokens, state, finalize)
        return self.solve_ready([state], finalize)[0]

    def feed(self, tokens: torch.Tensor, state: FlowState, finalize: bool) -> None:
        """Queue the features of tokens ``[B, n]`` in one lockstep state (checked); ``solve_ready`` then
        solves the chunks they complete."""
        if state.finished:
            raise ValueError("this flow stream is finalized; start a new one with init_state()")
        tokens = self._check_tokens(tokens, "tokens").to(self.input_embedding.weight.device)
        if tokens.shape[0] != state.batch_size:
            raise ValueError(f"tokens must be [B={state.batch_size}, n], got {list(tokens.shape)}")
        self._feed_tokens(tokens, state, finalize)

    def solve_ready(self, states: list[FlowState], finalize: bool) -> list[torch.Tensor]:
        """Solve every chunk the queued features of ``states`` complete (``finalize``: and what is left,
        ending the streams) -> each state's mel ``[B, 80, m]``. Lockstep states at different positions (the
        cohorts of a server's sessions) have their chunks solved together: one DiT run per Euler step for
        all of them (``DiT.step_many``)."""
        pieces: list[list[torch.Tensor]] = [[] for _ in states]
        while True:
            ready = []
            for i, state in enumerate(states):
                need = state.chunk_size + (state.prompt_cond.shape[2] if state.frames == 0 else 0)
                have = state.mu.shape[2]
                if have and (have >= need or finalize):
                    ready.append((i, min(need, have)))
            if not ready:
                break
            for (i, _), mel in zip(
                ready, self._solve_chunks([(states[i], n) for i, n in ready]), strict=True
            ):
                pieces[i].append(mel)
                states[i].chunk_size = states[i].schedule.next_size(states[i].chunk_size)
        out = []
        for state, parts in zip(states, pieces, strict=True):
            state.finished = finalize
            empty = state.spks.new_zeros(state.batch_size, self.config.output_size, 0).float()
            out.append(torch.cat(parts, dim=2) if parts else empty)
        return out

    def _feed_tokens(self, tokens: torch.Tensor, state: FlowState, finalize: bool) -> None:
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

    def _chunk_inputs(self, n: int, state: FlowState) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Take the next ``n`` queued mu frames of ``state`` as a chunk: its noise ``x``, ``mu`` and ``cond``
        ``[B, 80, n]`` (the caches trimmed to the chunk's context first)."""
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
        return x, mu, cond

    @staticmethod
    def _chunk_done(state: FlowState, n: int, mel: torch.Tensor) -> torch.Tensor:
        """Record a solved chunk of ``n`` frames; returns its mel without voice-prompt frames."""
        start, n_prompt = state.frames, state.prompt_cond.shape[2]
        state.chunk_lengths = state.chunk_lengths + [n]
        state.frames = start + n
        return mel[:, :, max(0, n_prompt - start) :]

    def _solve_chunks(self, items: list[tuple[FlowState, int]]) -> list[torch.Tensor]:
        """Solve one chunk of each ``(state, frames)`` (all Euler steps, with guidance) against its caches;
        several states run as one batch, their chunks right-padded to the longest."""
        decoder = self.decoder
        inputs = [self._chunk_inputs(n, state) for state, n in items]
        steps = {len(state.caches) for state, _ in items}
        if len(steps) > 1:
            raise ValueError(
                f"streams solved together need the same number of Euler steps, got {sorted(steps)}"
            )
        longest = max(n for _, n in items)

        def padded(z: torch.Tensor) -> torch.Tensor:
            return F.pad(z, (0, longest - z.shape[2]))

        def both(
            parts: list[torch.Tensor],
        ) -> torch.Tensor:  # each group's conditional, then its unconditional rows
            return torch.cat([z for part in parts for z in (part, torch.zeros_like(part))])

        mu_in = both([padded(mu) for _, mu, _ in inputs])
        cond_in = both([padded(cond) for _, _, cond in inputs])
        spks_in = both([state.spks for state, _ in items])
        sizes = [state.batch_size for state, _ in items]
        single = len(items) == 1

        def velocity(x, t, index):
            parts = torch.split(x, sizes)
            caches = [state.caches[index] for state, _ in items]
            x_in = torch.cat([z for part in parts for z in (part, part)])
            if single:
                v = decoder.estimator.step(x_in, mu_in, t.expand(x_in.shape[0]), spks_in, cond_in, caches[0])
            else:
                lengths = [n for _, n in items]
                v = decoder.estimator.step_many(
                    x_in, mu_in, t.expand(x_in.shape[0]), spks_in, cond_in, caches, lengths
                )
            return torch.cat([decoder.guided(part) for part in torch.split(v, [2 * b for b in sizes])])

        x = torch.cat([padded(x) for x, _, _ in inputs])
        t_span = decoder.time_span(steps.pop(), x.device, x.dtype)
        mel = decoder.euler(x, t_span, velocity).float()
        return [
            self._chunk_done(state, n, part[:, :, :n])
            for (state, n), part in zip(items, torch.split(mel, sizes), strict=True)
        ]

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
class FlowState(StreamState):
    """What ``CausalFlowMatching.step`` carries between token chunks, for B streams in lockstep (a
    ``StreamState``; sessions at different positions are joined as ``Cohorts`` of these).

    ``spks [B, 80]``: the projected speaker; ``prompt_cond [B, 80, F]``: the voice prompt's mel (the
    condition of the first F frames); ``lookahead_context`` / ``conv2_context``: the pre-look-ahead convs'
    input context; ``embedding_queue [B, k, 80]``: token embeddings waiting for their look-ahead (the
    residual); ``mu [B, 80, n]``: token features waiting for their chunk to fill; ``caches``: one
    ``DiTCache`` per Euler step (rows: conditional then unconditional). Shared by the batch:
    ``chunk_size`` (frames of the next chunk; it grows as ``schedule`` says), ``context_chunks``, the
    ``noise``, ``chunk_lengths`` (frames of the chunks in the caches), ``frames`` (solved so far, prompt
    included) and ``finished``."""

    spks: torch.Tensor = row()
    prompt_cond: torch.Tensor = row()
    lookahead_context: torch.Tensor = row()
    conv2_context: torch.Tensor = row()
    embedding_queue: torch.Tensor = row()
    mu: torch.Tensor = row()
    caches: list[DiTCache] = field(default_factory=list)
    chunk_size: int = shared(default=0)
    context_chunks: int | None = shared(default=None)
    noise: torch.Tensor | None = shared(default=None)
    schedule: ChunkPolicy | None = shared(default=None)
    chunk_lengths: list[int] = shared(default_factory=list)
    frames: int = shared(default=0)
    finished: bool = shared(default=False)

    @property
    def batch_size(self) -> int:
        return self.spks.shape[0]
