"""Token2Wav: 25 Hz speech tokens -> 24 kHz waveform (flow matching to mel, then HiFT).

Offline synthesis of any length: tokens are cut into segments of at most ``segment_tokens`` (30 s by
default, as the official code does); each segment is synthesised with ``overlap_tokens`` of the previous
segment's tokens in front of it, and the overlapping audio is cross-faded with a raised-cosine window, so
there is no seam. A last segment shorter than ``min_last_tokens`` is merged with the one before and the
pair split in half (the official rule, which keeps every segment long enough to sound natural).

Streaming (``stream``): tokens are pushed as they come. The flow solves one attention chunk of
``2 * hop_tokens`` mel frames as soon as its tokens and 3 tokens of look-ahead are there (one run per hop,
against the cached keys and values of at most ``context_tokens`` earlier tokens), and HiFT turns each mel
frame into audio once its 4 frames of look-ahead are there (convolution caches, a running phase). Nothing is
computed twice. Joined, the chunks equal ``synthesize(tokens, chunk_tokens=hop_tokens)``, the same
chunk-causal attention offline, for inputs up to one segment. ``hop_growth`` / ``max_hop_tokens`` make
each hop after the first longer (fewer, larger flow runs once the first audio is out); ``synthesize``'s
``chunk_growth`` / ``max_chunk_tokens`` give the same attention offline.

Several sessions (a server's, one row each) run as one batch on the streaming contract of
``funaudiochat.base``: ``init_state(B, speaker=[...])`` and ``step(codes, state)``, which returns one
waveform per row. Rows that started together and get the same number of codes step as one lockstep
cohort; a session joined later (``StreamState.cat``), reset (``state.reset``) or given another number of
codes goes on in a cohort of its own. Each row equals that session's own stream.

Token ids: 0..6560 are speech codes; the special ids 6561..6564 (BOS / EOS / pad / unused) that a model's
raw output may contain are dropped with a warning; anything else is a ``ValueError``. No tokens give an
empty waveform.

Example:
    >>> t2w = Token2Wav(flow, hift, speakers=SpeakerTable.load("speakers.safetensors"))
    >>> wave = t2w.synthesize(codes, speaker="中文女")       # float32 [samples] at 24 kHz
    >>> stream = t2w.stream(speaker="中文女")                # hop 15 tokens + 3 look-ahead
    >>> for piece in token_pieces:
    ...     play(stream.push(piece))                         # audio as soon as it is ready
    >>> play(stream.finalize())
    >>> state = t2w.init_state(2, speaker=["中文女", "英文男"])  # two sessions in one batch
    >>> waves = t2w.step(codes_2xn, state)                  # [samples] per row
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from funaudiochat.base.constants import SPECIAL_IDS, SPEECH_CODES, VOCODER_SAMPLE_RATE
from funaudiochat.base.rng import seeded
from funaudiochat.base.streaming import Cohorts, StreamState

from .flow import CausalFlowMatching, ChunkPolicy, FlowConfig, FlowState
from .hift import HiFTConfig, HiFTGenerator, HiFTState, SourceNoise
from .hift_batch import step_together
from .speakers import EMBEDDING_DIM, Speaker, SpeakerTable

Voice = str | Speaker | torch.Tensor | None  # a table name, a speaker, a bare embedding, or the default
SAMPLE_RATE = VOCODER_SAMPLE_RATE


def clean_tokens(tokens: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """1-D long tensor of speech codes: specials 6561..6564 dropped (with a warning), others refused."""
    ids = _checked_ids(torch.as_tensor(tokens).reshape(-1))
    special = _specials(ids, stacklevel=4)
    return ids if special is None else ids[~special]


def clean_token_rows(tokens, batch_size: int) -> list[torch.Tensor]:
    """The next codes of each of ``batch_size`` streams -> one 1-D long tensor per row, cleaned as
    ``clean_tokens`` does (one warning for all dropped specials).

    tokens: ``[B, n]`` (a tensor or nested lists), or one sequence per row (rows may differ in length),
    or, for a single stream, a flat sequence."""
    if isinstance(tokens, torch.Tensor) or not _is_nested(tokens):
        as_tensor = torch.as_tensor(tokens)
        if as_tensor.ndim <= 1 and batch_size == 1:
            rows = [as_tensor.reshape(-1)]
        elif as_tensor.ndim == 2:
            rows = list(as_tensor)
        else:
            raise ValueError(
                f"a batch of {batch_size} streams takes codes [B, n] or one sequence per row, got shape "
                f"{list(as_tensor.shape)}"
            )
    else:
        rows = [torch.as_tensor(row).reshape(-1) for row in tokens]
    if len(rows) != batch_size:
        raise ValueError(f"this batch has {batch_size} streams; got codes for {len(rows)} rows")
    rows = [_checked_ids(row) for row in rows]
    joined = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long)
    if _specials(joined, stacklevel=5) is None:
        return rows
    return [row[(row < SPECIAL_IDS.start) | (row >= SPECIAL_IDS.stop)] for row in rows]


def _is_nested(tokens) -> bool:
    """Whether ``tokens`` is a sequence of per-row sequences (not a flat sequence of ids)."""
    return isinstance(tokens, list | tuple) and bool(tokens) and not isinstance(tokens[0], int | float)


def _checked_ids(ids: torch.Tensor) -> torch.Tensor:
    """Integer ids as long; anything outside the speech codes and the specials is a ``ValueError``."""
    if ids.numel() == 0:
        return ids.long()
    if ids.is_floating_point():
        raise ValueError(f"speech tokens must be integers, got dtype {ids.dtype}")
    ids = ids.long()
    special = (ids >= SPECIAL_IDS.start) & (ids < SPECIAL_IDS.stop)
    bad = ((ids < 0) | (ids >= SPECIAL_IDS.stop)) & ~special
    if bad.any():
        values = sorted(set(ids[bad].tolist()))[:10]
        raise ValueError(
            f"speech tokens must lie in 0..{SPEECH_CODES - 1} (specials "
            f"{SPECIAL_IDS.start}..{SPECIAL_IDS.stop - 1} are dropped); got {values}"
        )
    return ids


def _specials(ids: torch.Tensor, stacklevel: int) -> torch.Tensor | None:
    """The mask of special ids (warning how many will be dropped), or None when there are none."""
    special = (ids >= SPECIAL_IDS.start) & (ids < SPECIAL_IDS.stop)
    if not special.any():
        return None
    warnings.warn(
        f"dropped {int(special.sum())} special speech ids ({SPECIAL_IDS.start}.."
        f"{SPECIAL_IDS.stop - 1}: BOS/EOS/pad) before vocoding",
        stacklevel=stacklevel,
    )
    return special


def check_hops(hop_tokens: int, hop_growth: int = 1, max_hop_tokens: int | None = None) -> None:
    """A stream's hop schedule (see ``Token2Wav.init_state``): a ``ValueError`` naming what is wrong."""
    if hop_tokens < 1:
        raise ValueError(f"hop_tokens must be >= 1, got {hop_tokens}")
    _check_growth(hop_tokens, hop_growth, max_hop_tokens, "hop")


def _check_growth(first: int, growth: int, longest: int | None, name: str) -> None:
    """A growing schedule needs a bound at or above the first size."""
    if growth < 1:
        raise ValueError(f"{name}_growth must be an integer >= 1, got {growth}")
    if growth > 1 and longest is None:
        raise ValueError(f"{name}_growth {growth} needs max_{name}_tokens (the longest {name})")
    if longest is not None and longest < first:
        raise ValueError(f"max_{name}_tokens ({longest}) must be >= the first {name} ({first})")


def plan_segments(num_tokens: int, segment_tokens: int, min_last_tokens: int) -> list[tuple[int, int]]:
    """Cut ``[0, num_tokens)`` into segments of at most ``segment_tokens``; a short last segment is merged
    with the previous one and the pair split in half."""
    if num_tokens <= segment_tokens:
        return [(0, num_tokens)] if num_tokens else []
    bounds = list(range(0, num_tokens, segment_tokens)) + [num_tokens]
    segments = list(zip(bounds[:-1], bounds[1:], strict=True))
    if segments[-1][1] - segments[-1][0] < min_last_tokens:
        start = segments[-2][0]
        middle = (start + num_tokens) // 2
        segments[-2:] = [(start, middle), (middle, num_tokens)]
    return segments


class Token2Wav:
    """Flow + HiFT with a speaker table. ``synthesize`` is offline; see the module docstring."""

    def __init__(
        self,
        flow: CausalFlowMatching,
        hift: HiFTGenerator,
        speakers: SpeakerTable | None = None,
        segment_tokens: int = 750,
        overlap_tokens: int = 25,
        min_last_tokens: int = 50,
        noise_seed: int = 0,
    ):
        if not 0 <= overlap_tokens < segment_tokens:
            raise ValueError(
                f"overlap_tokens must lie in [0, segment_tokens={segment_tokens}), got {overlap_tokens}"
            )
        self.flow = flow.eval()
        self.hift = hift.eval()
        self.speakers = speakers or SpeakerTable()
        self.segment_tokens = segment_tokens
        self.overlap_tokens = overlap_tokens
        self.min_last_tokens = min_last_tokens
        self.noise_seed = noise_seed
        self.samples_per_token = flow.config.token_mel_ratio * hift.config.samples_per_frame

    @classmethod
    def random(cls, seed: int = 0) -> Token2Wav:
        """A seeded tiny random vocoder (tests, and the CLI without weights): audio of the right length
        and shape, no meaning."""
        with seeded(seed):
            flow, hift = CausalFlowMatching(FlowConfig.tiny()), HiFTGenerator(HiFTConfig.tiny())
            voice = Speaker(torch.randn(EMBEDDING_DIM))
        return cls(flow, hift, SpeakerTable({"default": voice}))

    def _speaker(self, speaker: Voice) -> Speaker:
        if speaker is None:
            if not len(self.speakers):
                return Speaker(torch.zeros(EMBEDDING_DIM))
            return self.speakers[self.speakers.names[0]]
        if isinstance(speaker, str):
            return self.speakers[speaker]
        if isinstance(speaker, torch.Tensor):
            speaker = Speaker(speaker.reshape(-1).float())
        speaker.validate("<given>")
        return speaker

    def _source_noise(self) -> SourceNoise:
        """HiFT's source noise for ``noise_seed``: one object for every call, so that its random blocks are
        drawn once (it reads them by absolute sample position: shared by any number of streams)."""
        harmonics = self.hift.config.nb_harmonics + 1
        held = self.__dict__.get("_noise")
        if held is None or held.seed != self.noise_seed or held.harmonics != harmonics:
            held = self._noise = SourceNoise(harmonics, seed=self.noise_seed)
        return held

    def _frame_chunks(self, tokens: int, growth: int, longest: int | None, start: int = 0) -> ChunkPolicy:
        """Chunks given in tokens (first size, growth, longest) -> the flow's policy in mel frames."""
        ratio = self.flow.config.token_mel_ratio
        return ChunkPolicy(
            tokens * ratio, start, growth=growth, max_size=None if longest is None else longest * ratio
        )

    @torch.inference_mode()
    def synthesize(
        self,
        tokens: Sequence[int] | torch.Tensor,
        speaker: str | Speaker | torch.Tensor | None = None,
        chunk_tokens: int | None = None,
        chunk_growth: int = 1,
        max_chunk_tokens: int | None = None,
    ) -> torch.Tensor:
        """Speech tokens -> waveform ``[len * 960]`` float32 at 24 kHz (see the module docstring).

        ``chunk_tokens``: None attends over the whole segment (the official offline call); a number uses the
        chunk-causal attention of a stream with that hop (chunks counted from the end of the voice prompt),
        growing as ``stream``'s ``hop_growth`` / ``max_hop_tokens`` say with ``chunk_growth`` /
        ``max_chunk_tokens``."""
        if chunk_tokens is not None and chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be a positive number of tokens or None, got {chunk_tokens}")
        _check_growth(chunk_tokens or 1, chunk_growth, max_chunk_tokens, "chunk")
        ids = clean_tokens(tokens)
        voice = self._speaker(speaker)
        segments = plan_segments(ids.numel(), self.segment_tokens, self.min_last_tokens)
        if not segments:
            return torch.zeros(0)
        device = self.flow.input_embedding.weight.device
        embedding, prompt_token, prompt_feat = _stack_voices([voice], device)
        noise = self._source_noise()
        out = torch.zeros(ids.numel() * self.samples_per_token)
        for start, end in segments:
            lead = min(self.overlap_tokens, start)
            chunk = ids[start - lead : end][None].to(device)
            chunks = None
            if chunk_tokens is not None:
                n_prompt = 0 if prompt_feat is None else prompt_feat.shape[1]
                chunks = self._frame_chunks(chunk_tokens, chunk_growth, max_chunk_tokens, start=n_prompt)
            mel, _ = self.flow.inference(
                chunk,
                embedding,
                prompt_token=prompt_token,
                prompt_feat=prompt_feat,
                streaming=chunks is not None,
                chunks=chunks,
            )
            wave, _ = self.hift.inference(mel, noise=noise)
            wave = wave[0].float().cpu()
            first = (start - lead) * self.samples_per_token
            fade = lead * self.samples_per_token
            if fade:
                ramp = 0.5 - 0.5 * torch.cos(torch.linspace(0, math.pi, fade))
                wave[:fade] = wave[:fade] * ramp + out[first : first + fade] * (1 - ramp)
            out[first : first + wave.numel()] = wave
        return out

    # -- streaming ------------------------------------------------------------------------------------------

    def init_state(
        self,
        batch_size: int = 1,
        speaker: Voice | Sequence[Voice] = None,
        hop_tokens: int = 15,
        context_tokens: int | None = 200,
        hop_growth: int = 1,
        max_hop_tokens: int | None = None,
    ) -> Cohorts:
        """A streaming state for ``batch_size`` sessions that start now (see ``step``): ``Cohorts`` of one
        lockstep ``Token2WavState``, to which later sessions are joined with ``StreamState.cat``.

        speaker: one voice for every row, or a list with one per row (voice prompts, if any, of equal
        lengths); hop_tokens: tokens per flow chunk (the audio of a hop comes out once its tokens and 3
        more are in); hop_growth / max_hop_tokens: each hop after the first is ``hop_growth`` times
        longer, up to ``max_hop_tokens`` (the first audio as early as before, then fewer and cheaper flow
        runs; CosyVoice's ``stream_scale_factor``); context_tokens: how many earlier tokens a chunk attends
        to, rounded down to whole hops of the longest size (None: all; the official server keeps 200)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        check_hops(hop_tokens, hop_growth, max_hop_tokens)
        longest = max_hop_tokens if hop_growth > 1 else hop_tokens
        if context_tokens is not None and context_tokens < 0:
            raise ValueError(f"context_tokens must be >= 0 or None, got {context_tokens}")
        if isinstance(speaker, list | tuple):
            if len(speaker) != batch_size:
                raise ValueError(f"got {len(speaker)} speakers for a batch of {batch_size} streams")
            voices = [self._speaker(one) for one in speaker]
        else:
            voices = [self._speaker(speaker)] * batch_size
        device = self.flow.input_embedding.weight.device
        embedding, prompt_token, prompt_feat = _stack_voices(voices, device)
        chunks = self._frame_chunks(hop_tokens, hop_growth, longest)
        flow = self.flow.init_state(
            embedding,
            chunk_size=chunks.size,
            context_chunks=None if context_tokens is None else context_tokens // longest,
            prompt_token=prompt_token,
            prompt_feat=prompt_feat,
            chunk_growth=chunks.growth,
            max_chunk_size=chunks.max_size,
        )
        return Cohorts.of(Token2WavState(flow, self.hift.init_state(batch_size, self._source_noise())))

    @torch.inference_mode()
    def step(self, tokens, state: Cohorts, finalize: bool = False) -> list[torch.Tensor]:
        """The next speech tokens of every row -> per row the audio they complete ``[samples]`` (float32,
        24 kHz; often empty); ``state`` is updated in place (the streaming contract of
        ``funaudiochat.base``). ``finalize=True`` ends every row and returns the rest: all steps of a row
        joined have 960 samples per token.

        tokens: ``[B, n]``, or one sequence per row (rows may get different numbers of codes: a row that
        gets another amount than the others of its cohort goes on in a cohort of its own), or for a
        single stream a flat sequence. Specials are dropped as in ``synthesize``."""
        if not isinstance(state, Cohorts):
            raise ValueError(
                f"Token2Wav.step takes the Cohorts made by init_state, got {type(state).__name__}"
            )
        rows = clean_token_rows(tokens, state.batch_size)
        device = self.flow.input_embedding.weight.device
        # every cohort's codes queued, then the flow chunks of all cohorts solved together
        for part, group in state.parts(rows):
            self.flow.feed(part.to(device), group.flow, finalize)
        mels = self.flow.solve_ready([group.flow for group in state.groups], finalize)
        waves = step_together(self.hift, mels, [group.hift for group in state.groups], finalize)
        return state.gather([wave.float().cpu() for wave in waves])

    def stream(
        self,
        speaker: Voice = None,
        hop_tokens: int = 15,
        context_tokens: int | None = 200,
        hop_growth: int = 1,
        max_hop_tokens: int | None = None,
    ) -> Token2WavStream:
        """One streaming session: ``push(tokens) -> audio`` as tokens come, then ``finalize() -> audio``
        (arguments as ``init_state``; several sessions in one batch go through ``init_state`` and
        ``step``)."""
        if isinstance(speaker, list | tuple):
            raise ValueError(
                "Token2Wav.stream is one session; for a batch of sessions use "
                "init_state(batch_size, speaker=[...]) and step(codes [B, n], state)"
            )
        return Token2WavStream(
            self, self.init_state(1, speaker, hop_tokens, context_tokens, hop_growth, max_hop_tokens)
        )


def _stack_voices(voices: list[Speaker], device: torch.device):
    """Speakers -> ``embedding [B, 192]`` and the voice prompts ``[B, P]`` / ``[B, F, 80]`` (None when
    no speaker has one) on ``device``; rows of a batch need prompts of the same lengths, or none."""
    shapes = {
        None if v.prompt_tokens is None else (v.prompt_tokens.numel(), v.prompt_mel.shape[0]) for v in voices
    }
    if len(shapes) > 1:
        described = sorted("none" if s is None else f"{s[0]} tokens / {s[1]} frames" for s in shapes)
        raise ValueError(
            f"speakers in one batch of streams need voice prompts of the same length (or none); got "
            f"{', '.join(described)}"
        )
    embedding = torch.stack([v.embedding.reshape(-1).float() for v in voices]).to(device)
    if voices[0].prompt_tokens is None:
        return embedding, None, None
    return (
        embedding,
        torch.stack([v.prompt_tokens for v in voices]).to(device),
        torch.stack([v.prompt_mel for v in voices]).to(device),
    )


@dataclass
class Token2WavState(StreamState):
    """The flow's and HiFT's lockstep streaming states of B Token2Wav streams (one cohort of a
    ``Cohorts`` state)."""

    flow: FlowState
    hift: HiFTState

    @property
    def finished(self) -> bool:
        return self.flow.finished


class Token2WavStream:
    """One streaming session of a ``Token2Wav`` (made by ``Token2Wav.stream``).

    ``push(tokens)`` returns the audio that is ready (float32 ``[samples]``, 24 kHz; empty until the first
    hop and its look-ahead are in); ``finalize(tokens=())`` ends the session and returns the rest;
    ``samples`` counts the audio given so far."""

    def __init__(self, vocoder: Token2Wav, state: Cohorts):
        self.vocoder = vocoder
        self.state = state
        self.samples = 0

    @property
    def finished(self) -> bool:
        return self.state.finished

    def push(self, tokens: Sequence[int] | torch.Tensor) -> torch.Tensor:
        return self._step(tokens, False)

    def finalize(self, tokens: Sequence[int] | torch.Tensor = ()) -> torch.Tensor:
        return self._step(tokens, True)

    def _step(self, tokens, finalize: bool) -> torch.Tensor:
        if self.finished:
            raise ValueError("this Token2Wav stream is finalized; start a new one with Token2Wav.stream()")
        wave = self.vocoder.step(
            [torch.as_tensor(tokens, dtype=torch.long).reshape(-1)], self.state, finalize
        )[0]
        self.samples += wave.shape[-1]
        return wave
