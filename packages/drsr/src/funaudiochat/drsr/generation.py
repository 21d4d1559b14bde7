"""Parallel text + speech decoding (reference §4.3) on an explicit, batchable decoding state.

One decoding step is one 5 Hz LLM step: the shared LLM consumes the previous text token (averaged with
the previous speech group while speaking), predicts the next text token, and the SRH turns the same
hidden state into the next k = 5 speech tokens (5 autoregressive sub-steps, KV cache kept for the whole
response). ``generate`` is ``prefill`` followed by ``decode_step`` until every sequence is done, and
``stream`` yields each step as it is made, so streaming and offline decoding are the same computation.

The state follows the one streaming contract (``funaudiochat.base.streaming``): ``decode_step`` updates it
in place, and a server batches sessions with ``select`` / ``StreamState.cat`` / ``reset``. Each row
carries its own positions, attention mask and step count, so a session prefilled later joins a running
batch (its caches are left-padded) and decodes exactly what it decodes alone.

Differences from the official ``_sample`` (all keep its single-sequence results):
- batches of prompts with different lengths (left padding, explicit positions and masks) give exactly
  what each prompt gives alone: speech history, speaking state and random draws are per sequence;
- every sequence draws from its own seeded generator, so results are reproducible and batch-independent;
- the state is data (``DecodingState``), owned by the caller, never hidden on the model.

This module never imports the model (``FunAudioChatGenerationMixin`` gives the model its ``generate`` /
``stream`` methods), so the import graph stays one-way: modeling -> generation -> speech_heads.

Example:
    >>> state, first = prefill(model, inputs, DecodingConfig(seed=0))
    >>> for step in stream(model, inputs, DecodingConfig()):
    ...     print(step.text_tokens, step.speech_tokens[step.speech_valid])
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from funaudiochat.base.streaming import StreamState, per_row, ragged, row, shared
from torch.profiler import record_function

from . import fast_decode, ops
from .hf_compat import cache_kwargs
from .kv_cache import KVCache
from .prompt_cache import PromptPrefix, srh_prompt_token
from .speech_heads import SRHState

if TYPE_CHECKING:  # only for annotations: generation never imports the model at run time
    from .modeling import FunAudioChatForConditionalGeneration


@dataclass
class SamplingConfig:
    """How one stream (text or speech) picks its tokens.

    ``do_sample=False`` is argmax (after the repetition penalty, if not 1.0). Defaults are the official
    speech settings (reference §4.4); ``ras_window > 0`` turns on CosyVoice's repetition-aware sampling;
    ``repetition_window > 0`` limits the repetition penalty to the stream's last that many tokens (0: all
    of them, the official setting)."""

    do_sample: bool = True
    temperature: float = 0.8
    top_p: float = 0.9
    top_k: int = 0
    repetition_penalty: float = 1.2
    ras_window: int = 0
    ras_tau: float = 0.1
    repetition_window: int = 0

    def __post_init__(self) -> None:
        if self.repetition_window < 0:
            raise ValueError(
                f"repetition_window must be >= 0 (0: the whole history), got {self.repetition_window}"
            )


def _greedy_text() -> SamplingConfig:
    return SamplingConfig(do_sample=False, repetition_penalty=1.0)


@dataclass
class DecodingConfig:
    """Settings of one generation (named apart from transformers' ``GenerationConfig``, which it is not).
    Text is greedy with no processors by default, as in the official examples; speech is sampled with
    temperature 0.8, top-p 0.9 and repetition penalty 1.2."""

    max_new_tokens: int = 512
    text: SamplingConfig = field(default_factory=_greedy_text)
    speech: SamplingConfig = field(default_factory=SamplingConfig)
    force_text_abos: bool = True
    disable_speech: bool = False
    # one-position steps through fast_decode (one extension op, or plain tensor ops; agreeing to float
    # rounding) on caches that append in place; False: the transformers model calls and DynamicCache, the
    # reference
    fast_decode: bool = True
    # the seed makes the generators of a prefill; configs that differ only in it decode a batch alike
    seed: int | list[int] = field(default=0, compare=False)
    # the text's <|sil|> probability is multiplied by this before each pick (moshi's client calls it
    # pad_mult; 1.0: unchanged)
    sil_scale: float = 1.0
    # a planned reply (``prefill``'s ``plan``) writes at most this many <|sil|> in a row before its next
    # planned token (then that token is forced; 0: no limit): the demo model's aligned training replies
    # never wait longer than 3
    plan_max_silence: int = 3
    # a planned reply's text is its plan token by token, one a 5 Hz step: the plan is a layout holding its
    # own <|sil|> (``funaudiochat.drsr.speech_timing``), the model's speech says it at those steps
    plan_exact: bool = False

    def __post_init__(self) -> None:
        if self.plan_max_silence < 0:
            raise ValueError(f"plan_max_silence must be >= 0, got {self.plan_max_silence}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.sil_scale > 0:
            raise ValueError(f"sil_scale must be > 0 (1.0: unchanged), got {self.sil_scale}")


@dataclass(kw_only=True)
class DecodingState(StreamState):
    """Everything a batch of B sequences needs to take the next step (tensors have a leading B; a
    ``StreamState``, so rows can be selected, joined and reset).

    ``sequences [B, W]`` prompt and generated text ids (left padding, masked out); ``attention_mask [B,
    W]``; ``next_position [B]`` LLM position of the next input; ``llm_cache`` the shared LLM's keys and
    values (left-padded like the mask); ``srh`` the SRH's state (None without speech);
    ``last_speech [B, k]`` the speech group to feed next (meaningful where ``has_speech``);
    ``speaking`` / ``finished [B]``; ``new_tokens [B]`` steps taken per row; ``speech`` per row the 1-D
    tensor of generated speech ids; ``generators`` one seeded ``torch.Generator`` per row; ``plan`` per row
    the text still to say of a planned spoken reply (see ``prefill``; None: the text is free); ``config``
    the settings every row of the batch shares.
    """

    sequences: torch.Tensor = ragged(dim=1, side="left", fill=0)
    attention_mask: torch.Tensor = ragged(dim=1, side="left", fill=0)
    next_position: torch.Tensor = row()
    llm_cache: KVCache
    srh: SRHState | None
    last_speech: torch.Tensor = row()
    has_speech: torch.Tensor = row()
    speaking: torch.Tensor = row()
    finished: torch.Tensor = row()
    new_tokens: torch.Tensor = row()
    speech: list[torch.Tensor] = per_row()
    generators: list[torch.Generator] = per_row()
    plan: list[torch.Tensor | None] = per_row()
    config: DecodingConfig = shared(default_factory=lambda: DecodingConfig())

    def generated_text(self, index: int) -> torch.Tensor:
        """The text ids row ``index`` generated so far (its last ``new_tokens`` entries)."""
        n = int(self.new_tokens[index])
        return self.sequences[index, self.sequences.shape[1] - n :]


@dataclass
class StepOutput:
    """One 5 Hz step for B sequences: ``text_tokens [B]``; ``speech_tokens [B, k]``, valid where
    ``speech_valid [B]``; ``finished [B]`` (True from the step that produced the end token on)."""

    text_tokens: torch.Tensor
    speech_tokens: torch.Tensor
    speech_valid: torch.Tensor
    finished: torch.Tensor


@dataclass
class GenerateOutput:
    """``sequences [B, S+n]`` (prompt + text; finished rows padded), and per sequence the speech ids it
    generated (BOS delay tokens and EOS included, as the official ``speech_ids``)."""

    sequences: torch.Tensor
    speech_ids: list[torch.Tensor]
    prompt_length: int

    def speech_codes(self, index: int, num_codes: int = 6561) -> torch.Tensor:
        """The vocoder's input for sequence ``index``: only real codes ``0 <= c < num_codes``."""
        ids = self.speech_ids[index]
        return ids[(ids >= 0) & (ids < num_codes)]


def _uniforms(generators: list[torch.Generator], device) -> torch.Tensor:
    return torch.stack([torch.rand(2, generator=g) for g in generators]).to(device)


def _pad_histories(rows: list[torch.Tensor], device) -> torch.Tensor:
    width = max((r.numel() for r in rows), default=0)
    out = torch.full((len(rows), width), -1, dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        if r.numel():
            out[i, : r.numel()] = r.to(device)
    return out


def pick_tokens(
    logits: torch.Tensor, history: torch.Tensor, cfg: SamplingConfig, generators: list[torch.Generator]
) -> torch.Tensor:
    """Choose one token per row of ``logits [B, V]`` (``history [B, H]``, -1 = none) with ``cfg``."""
    with record_function("sampling"):
        if not cfg.do_sample and cfg.repetition_penalty == 1.0:
            return logits.argmax(-1)
        if cfg.repetition_window and history.shape[1] > cfg.repetition_window:
            history = _last_tokens(history, cfg.repetition_window)
        uniforms = _uniforms(generators, logits.device)
        return ops.sample(
            logits.float(),
            history,
            uniforms,
            temperature=cfg.temperature if cfg.do_sample else 0.0,
            top_k=cfg.top_k,
            top_p=cfg.top_p,
            repetition_penalty=cfg.repetition_penalty,
            ras_window=cfg.ras_window,
            ras_tau=cfg.ras_tau,
        )


def _last_tokens(history: torch.Tensor, n: int) -> torch.Tensor:
    """The last ``n`` real tokens of each row of ``history [B, H]`` (-1 = none, anywhere), -1 padded."""
    real = history >= 0
    rank = real.long().flip(-1).cumsum(-1).flip(-1)  # 1 for a row's last real token, 2 before it, ...
    return history.masked_fill(~real | (rank > n), -1)


def _eos_ids(text_config, device) -> torch.Tensor:
    eos = text_config.eos_token_id
    return torch.tensor(eos if isinstance(eos, (list, tuple)) else [eos], dtype=torch.long, device=device)


def _generators(seed: int | list[int], batch: int) -> list[torch.Generator]:
    seeds = [seed] * batch if isinstance(seed, int) else list(seed)
    if len(seeds) != batch:
        raise ValueError(f"seed must be an int or one int per sequence ({batch}), got {len(seeds)}")
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def _validate_prompt(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
    if input_ids.ndim != 2 or input_ids.shape[1] == 0:
        raise ValueError(
            f"input_ids must be a non-empty [batch, length] tensor, got {tuple(input_ids.shape)}"
        )
    lengths = attention_mask.sum(-1)
    if (lengths == 0).any():
        raise ValueError(f"empty prompt(s) at batch index {torch.nonzero(lengths == 0).flatten().tolist()}")
    if (attention_mask[:, -1] == 0).any():
        raise ValueError("prompts must be left-padded for generation (attention_mask[:, -1] must be 1)")
    vocab = model.config.text_config.vocab_size
    if input_ids.min() < 0 or input_ids.max() >= vocab:
        raise ValueError(
            f"input_ids must lie in [0, {vocab}), got range [{int(input_ids.min())}, {int(input_ids.max())}]"
        )


@torch.inference_mode()
def prefill(
    model: FunAudioChatForConditionalGeneration,
    inputs: dict,
    config: DecodingConfig | None = None,
    prefix: PromptPrefix | None = None,
    plan: list[torch.Tensor | None] | None = None,
) -> tuple[DecodingState, StepOutput]:
    """Run the prompt (``input_ids``, ``attention_mask`` and the audio inputs of the processor) and take
    the first step. Returns the new state and the first step's output.

    prefix: the prompt's first tokens computed already (``prompt_cache.PromptPrefix``; every row must
    start with them, unpadded): only the rest of the prompt runs.
    plan: per row, the text ids its spoken reply says (1-D, no end token; None: free text), written
    beforehand (a text-only reply to the same question): while the row speaks, its text may only be
    ``<|sil|>`` or the plan's next token, and ``<|sil|>`` once the plan is written, so the model decides
    when each word comes (waiting at most ``config.plan_max_silence`` slots) and its speech what it
    sounds like, but not what is said; its speech does not end (speech EOS) before the plan is written."""
    config = config or DecodingConfig()
    input_ids = inputs["input_ids"]
    attention_mask = inputs.get("attention_mask")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    _validate_prompt(model, input_ids, attention_mask)
    batch = input_ids.shape[0]
    device = input_ids.device
    merged = model.merge_inputs(
        input_ids,
        inputs.get("speech_ids"),
        inputs.get("speech_attention_mask"),
        inputs.get("input_features"),
        inputs.get("feature_attention_mask"),
        inputs.get("feature_exist_mask"),
        inputs.get("text_ids"),
        inputs.get("text_attention_mask"),
    )
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    speech = model.audio_invert_tower is not None and not config.disable_speech
    start = 0  # the first position to run
    if prefix is not None:
        prefix.check(input_ids, attention_mask, config.fast_decode, speech)
        start = prefix.length
        cache, srh = prefix.expand(batch)
    else:
        cache = KVCache.empty(model.language_model.config, batch, growing=config.fast_decode)
        srh = model.audio_invert_tower.init_state(batch, device, config.fast_decode) if speech else None
    with record_function("llm"):
        out = model.language_model.model(
            inputs_embeds=merged.inputs_embeds[:, start:],
            attention_mask=attention_mask,
            position_ids=positions[:, start:],
            **cache_kwargs(cache.cache),
            use_cache=True,
        )
    k = model.group_size
    state = DecodingState(
        sequences=input_ids.clone(),
        attention_mask=attention_mask.long().clone(),
        next_position=positions[:, -1] + 1,
        llm_cache=cache,
        srh=srh,
        last_speech=torch.full(
            (batch, k), model.config.audio_config.pad_token_id, dtype=torch.long, device=device
        ),
        has_speech=torch.zeros(batch, dtype=torch.bool, device=device),
        speaking=input_ids[:, -1] == model.config.text_config.audio_bos_index,
        finished=torch.zeros(batch, dtype=torch.bool, device=device),
        speech=[input_ids.new_zeros(0) for _ in range(batch)],
        generators=_generators(config.seed, batch),
        plan=_check_plan(plan, batch, model.config.text_config.vocab_size),
        new_tokens=torch.zeros(batch, dtype=torch.long, device=device),
        config=config,
    )
    step = _finish_step(
        model,
        state,
        out.last_hidden_state,
        merged.text_embeds[:, start:],
        positions[:, start:],
        attention_mask[:, start:],
        first=True,
    )
    return state, step


def _finish_step(model, state, hidden, text_embeds, positions, new_mask, first: bool) -> StepOutput:
    """Shared tail of prefill and decode: text token, SRH group, state update (in place)."""
    config = state.config
    tc = model.config.text_config
    ac = model.config.audio_config
    k = model.group_size
    batch = hidden.shape[0]
    head = model.language_model.lm_head
    if config.fast_decode and not first:
        text_logits = fast_decode.project(hidden[:, -1], head).float()
    else:
        text_logits = head(hidden[:, -1]).float()
    text_history = state.sequences.masked_fill(state.attention_mask == 0, -1)
    if config.sil_scale != 1.0:
        text_logits[:, tc.sil_index] += math.log(config.sil_scale)
    planned = [b for b, p in enumerate(state.plan) if p is not None and bool(state.speaking[b])]
    if planned:
        text_logits = _hold_to_plan(text_logits, state, planned, tc.sil_index)
    text = pick_tokens(text_logits, text_history, config.text, state.generators)
    if first and config.force_text_abos:
        text = torch.full_like(text, tc.audio_bos_index)

    group = torch.full((batch, k), ac.pad_token_id, dtype=torch.long, device=hidden.device)
    srh = state.srh
    if srh is not None:
        history = list(state.speech)
        picked: list[torch.Tensor] = []
        unsaid = [b for b, p in enumerate(state.plan) if p is not None and p.numel()]

        def pick(logits: torch.Tensor, j: int) -> torch.Tensor:
            if unsaid:  # a planned reply's speech ends only once its text is written
                logits = logits.clone()
                logits[unsaid, ac.eos_token_id] = torch.finfo(logits.dtype).min
            rows = [torch.cat([history[b], *[p[b : b + 1] for p in picked]]) for b in range(batch)]
            token = pick_tokens(logits, _pad_histories(rows, logits.device), config.speech, state.generators)
            picked.append(token)
            return token

        prefix = srh_prompt_token(ac) if first else None
        if first and _prefill_group_is_pad(ac, state):  # one pass with the prompt, no sub-steps
            model.audio_invert_tower.fill(
                model.srh_conditioning(hidden, text_embeds),
                srh,
                positions=positions,
                valid=new_mask.long(),
                prefix_token=ac.pad_token_id,
            )
            srh.prev_token = torch.full_like(srh.prev_token, ac.pad_token_id)
        else:
            if first and ac.srh_prompt_token == "pad":  # the prompt's previous tokens as in training: pad,
                sampled = pick  # and the picks of a row already speaking

                def pick(logits: torch.Tensor, j: int) -> torch.Tensor:
                    return torch.where(state.speaking, sampled(logits, j), ac.pad_token_id)

            group = model.audio_invert_tower.step(
                model.srh_conditioning(hidden, text_embeds),
                srh,
                positions=positions,
                valid=new_mask.long(),
                pick=pick,
                prefix_token=prefix,
                fast=config.fast_decode,
            )

    active = ~state.finished
    text = torch.where(active, text, torch.full_like(text, tc.pad_token_id))
    # The end of text is read before a speech EOS overwrites the token, as in the official loop.
    finished = state.finished | (active & torch.isin(text, _eos_ids(tc, text.device)))
    new_tokens = state.new_tokens + 1
    finished = finished | (new_tokens >= config.max_new_tokens)
    emitting = state.speaking & active
    finish_speech = emitting & (group == ac.eos_token_id).any(-1)
    group = torch.where(finish_speech[:, None], torch.full_like(group, ac.eos_token_id), group)
    text = torch.where(finish_speech, torch.full_like(text, tc.audio_eos_index), text)
    speech = [torch.cat([s, group[b]]) if emitting[b] else s for b, s in enumerate(state.speech)]
    step = StepOutput(text_tokens=text, speech_tokens=group, speech_valid=emitting, finished=finished)
    state.sequences = torch.cat([state.sequences, text[:, None]], dim=1)
    state.attention_mask = torch.cat([state.attention_mask, active.long()[:, None]], dim=1)
    state.last_speech = torch.where(emitting[:, None], group, state.last_speech)
    state.has_speech = state.has_speech | emitting
    state.speaking = state.speaking & ~finish_speech & ~finished
    state.finished = finished
    state.speech = speech
    state.new_tokens = new_tokens
    for b in planned:
        plan = state.plan[b]
        if plan.numel() and int(text[b]) == int(plan[0]):
            state.plan[b] = plan[1:]
    return step


def _check_plan(plan: list[torch.Tensor | None] | None, batch: int, vocab: int) -> list[torch.Tensor | None]:
    """``plan`` as one entry per row (1-D long tensors on the CPU, or None), checked."""
    if plan is None:
        return [None] * batch
    if len(plan) != batch:
        raise ValueError(f"plan must have one entry per sequence ({batch}), got {len(plan)}")
    rows = []
    for i, p in enumerate(plan):
        if p is None:
            rows.append(None)
            continue
        p = torch.as_tensor(p, dtype=torch.long).cpu()
        if p.ndim != 1 or (p.numel() and (p.min() < 0 or p.max() >= vocab)):
            raise ValueError(f"plan[{i}] must be a 1-D list of text ids in [0, {vocab}), got {p.tolist()!r}")
        rows.append(p)
    return rows


def _hold_to_plan(logits: torch.Tensor, state: DecodingState, rows: list[int], sil: int) -> torch.Tensor:
    """``logits [B, V]`` with, in ``rows``, every token but ``<|sil|>`` and the plan's next token at -inf,
    and ``<|sil|>`` too after ``plan_max_silence`` of them in a row; with ``plan_exact``, only the plan's
    next token (a laid-out plan holds its own ``<|sil|>``)."""
    allowed = torch.zeros_like(logits, dtype=torch.bool)
    wait = state.config.plan_max_silence
    for b in rows:
        plan = state.plan[b]
        if not plan.numel():
            allowed[b, sil] = True
            continue
        allowed[b, int(plan[0])] = True
        if state.config.plan_exact:
            continue
        recent = state.generated_text(b)[-wait:] if wait else state.generated_text(b)[:0]
        if not (wait and recent.numel() == wait and bool((recent == sil).all())):
            allowed[b, sil] = True
    keep = allowed.any(-1, keepdim=True)  # rows outside ``rows`` unchanged
    return torch.where(allowed | ~keep, logits, torch.finfo(logits.dtype).min)


def _prefill_group_is_pad(audio_config, state: DecodingState) -> bool:
    """Whether every pick of the prefill's speech group is pad: the prompt shows the SRH pad
    (``srh_prompt_token="pad"``) and no row speaks yet. Its sub-frames are then all fed pad and can run
    in the prompt's pass, without sub-steps or sampling."""
    return audio_config.srh_prompt_token == "pad" and not bool(state.speaking.any())


@torch.inference_mode()
def decode_step(model: FunAudioChatForConditionalGeneration, state: DecodingState) -> StepOutput:
    """Feed the last text token (averaged with the last speech group while speaking) and take one step;
    ``state`` is updated in place. Finished rows keep stepping (their outputs are padding) until the
    caller drops them with ``state.select``."""
    tc = model.config.text_config
    last_text = state.sequences[:, -1]
    speaking = state.speaking | (last_text == tc.audio_bos_index)
    state.speaking = speaking & ~state.finished
    embed = model.get_input_embeddings()
    text_embeds = embed(last_text)[:, None, :]
    inputs_embeds = text_embeds
    use_speech = state.speaking & state.has_speech
    if use_speech.any():
        with record_function("grouping"):
            grouped = model.audio_tower.group_speech(state.last_speech)
        inputs_embeds = torch.where(use_speech[:, None, None], (text_embeds + grouped) / 2, text_embeds)
    positions = state.next_position[:, None]
    new_mask = state.attention_mask[:, -1:]
    backbone = model.language_model.model
    with record_function("llm"):
        if state.config.fast_decode and fast_decode.supports(backbone):
            hidden = fast_decode.decode_one(
                backbone, inputs_embeds, state.attention_mask, positions, state.llm_cache.cache
            )
        else:
            hidden = backbone(
                inputs_embeds=inputs_embeds,
                attention_mask=state.attention_mask,
                position_ids=positions,
                **cache_kwargs(state.llm_cache.cache),
                use_cache=True,
            ).last_hidden_state
    state.next_position = state.next_position + 1
    return _finish_step(model, state, hidden, text_embeds, positions, new_mask, first=False)


def stream(
    model: FunAudioChatForConditionalGeneration,
    inputs: dict,
    config: DecodingConfig | None = None,
    prefix: PromptPrefix | None = None,
    plan: list[torch.Tensor | None] | None = None,
) -> Iterator[StepOutput]:
    """Yield every 5 Hz step of the generation as soon as it is made (``prefix``, ``plan``: see
    ``prefill``)."""
    state, step = prefill(model, inputs, config, prefix, plan)
    yield step
    while not bool(state.finished.all()):
        yield decode_step(model, state)


def generate(
    model: FunAudioChatForConditionalGeneration,
    inputs: dict,
    config: DecodingConfig | None = None,
    prefix: PromptPrefix | None = None,
    plan: list[torch.Tensor | None] | None = None,
) -> GenerateOutput:
    """Decode until every sequence has ended (``<|im_end|>``) or ``max_new_tokens`` steps were taken
    (``prefix``: the prompt's first tokens computed already; ``plan``: the text of spoken replies; see
    ``prefill``)."""
    state, _ = prefill(model, inputs, config, prefix, plan)
    while not bool(state.finished.all()):
        decode_step(model, state)
    return GenerateOutput(
        sequences=state.sequences, speech_ids=state.speech, prompt_length=inputs["input_ids"].shape[1]
    )


class FunAudioChatGenerationMixin:
    """Gives the model its decoding methods (the functions of this module); mixed into
    ``FunAudioChatForConditionalGeneration`` so that this module needs nothing from modeling."""

    def generate(
        self,
        inputs: dict,
        config: DecodingConfig | None = None,
        prefix: PromptPrefix | None = None,
        plan: list[torch.Tensor | None] | None = None,
    ) -> GenerateOutput:
        """Parallel text + speech decoding; ``inputs`` as produced by the processor (left-padded)."""
        return generate(self, inputs, config, prefix, plan)  # type: ignore[arg-type]

    def stream(
        self,
        inputs: dict,
        config: DecodingConfig | None = None,
        prefix: PromptPrefix | None = None,
        plan: list[torch.Tensor | None] | None = None,
    ) -> Iterator[StepOutput]:
        """Yield one ``StepOutput`` per 5 Hz step (text token + k speech tokens per sequence)."""
        return stream(self, inputs, config, prefix, plan)  # type: ignore[arg-type]

    def prefill(
        self,
        inputs: dict,
        config: DecodingConfig | None = None,
        prefix: PromptPrefix | None = None,
        plan: list[torch.Tensor | None] | None = None,
    ) -> tuple[DecodingState, StepOutput]:
        """The decoding state of a prompt and its first step (see ``prefill``)."""
        return prefill(self, inputs, config, prefix, plan)  # type: ignore[arg-type]

    def decode_step(self, state: DecodingState) -> StepOutput:
        """One 5 Hz step of every row of ``state``, in place (see ``decode_step``)."""
        return decode_step(self, state)  # type: ignore[arg-type]
