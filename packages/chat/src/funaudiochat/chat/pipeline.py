"""``Pipeline``: a spoken question in, a text and spoken answer out, offline or streamed.

    audio / text (+ history)  -> processor (ChatML prompt, log-mel, audio slots)
                              -> 5 Hz decoding (shared LLM + SRH: one text token and 5 speech codes a step)
                              -> Token2Wav (flow + HiFT) -> 24 kHz audio

``chat`` decodes the whole reply, then synthesises its speech; ``stream`` feeds the vocoder hop by hop while
the model is still speaking, so the first audio leaves early. Both make the same reply: the same decoding
steps, and the vocoder's chunk-causal attention of ``hop_tokens`` in both (``Token2Wav.synthesize`` with
``chunk_tokens`` equals its stream). Several requests given together decode as one batch, each reply equal
to its own run.

Example:
    >>> pipe = Pipeline.from_pretrained("demo-model/")    # or Pipeline.random(seed=0)
    >>> reply = pipe.chat(audio="question.wav")
    >>> reply.text, reply.audio.shape, reply.timings.first_audio_s
    >>> for event in pipe.stream(Request(audio="question.wav")):
    ...     play(event.samples) if isinstance(event, AudioChunk) else print(event)
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch
from funaudiochat.base.constants import VOCODER_SAMPLE_RATE
from funaudiochat.drsr import FunAudioChatForConditionalGeneration, PromptPrefix, decode_step, prefill
from funaudiochat.drsr.generation import DecodingConfig
from funaudiochat.drsr.processing import FunAudioChatProcessor, SpokenReply
from funaudiochat.drsr.prompt_cache import system_turn_length
from funaudiochat.drsr.prompts import (
    ASR_INSTRUCTION,
    DEFAULT_S2M_PROMPT,
    DEFAULT_S2T_PROMPT,
    function_calling_prompt,
    parse_tool_calls,
)
from funaudiochat.drsr.speech_timing import SpeechTiming
from funaudiochat.tokenizer import SpeechTokenizer
from funaudiochat.vocoder.token2wav import Token2Wav, check_hops

from .batch import ReplyBatch, batch_key, real_codes
from .loaders import load_parts, random_parts, save_parts
from .replies import Event, Reply, Timings
from .request import Request
from .voices import resolve_voice


class Pipeline:
    """The model, its processor, the vocoder and (optionally) the speech tokenizer, joined.

    model: the dual-resolution model; processor: its text tokenizer and audio front end; vocoder: speech
    codes -> 24 kHz audio (with its speaker table); speech_tokenizer: needed for voice clips; hop_tokens:
    codes per vocoder chunk when streaming (and the chunk-causal attention offline, so both agree);
    hop_growth / max_hop_tokens: each hop after the first that many times longer, up to that many codes
    (the first audio as early, then fewer and cheaper vocoder runs; ``Token2Wav.init_state``);
    prefix_cache: how many system turns to keep computed (``PromptPrefix``: a request whose system turn
    was seen runs only the rest of its prompt; 0: none). The kept states belong to the weights as they
    are: after changing them, call ``clear_prefix_cache``. plan_speech: a spoken reply's text is written
    first, as the text-only (S2T) reply to the same request, and the spoken pass then says that text (its
    text held to it, ``prefill``'s ``plan``): the spoken answer is as right as the written one; None: the
    model folder's choice (``plan_speech`` in its ``generation_config.json``; False when absent).
    speech_timing: with ``plan_speech``, the spoken pass writes the plan laid out at the slots this table
    gives each word (``speech_timing.SpeechTiming``, the folder's ``speech_timing.json``) instead of
    placing the words itself (``DecodingConfig.plan_exact``); None: the model places them."""

    def __init__(
        self,
        model: FunAudioChatForConditionalGeneration,
        processor: FunAudioChatProcessor,
        vocoder: Token2Wav,
        speech_tokenizer: SpeechTokenizer | None = None,
        hop_tokens: int = 15,
        hop_growth: int = 1,
        max_hop_tokens: int | None = None,
        prefix_cache: int = 8,
        plan_speech: bool | None = None,
        speech_timing: SpeechTiming | None = None,
    ):
        check_hops(hop_tokens, hop_growth, max_hop_tokens)
        if prefix_cache < 0:
            raise ValueError(f"prefix_cache must be >= 0 (0: no cache), got {prefix_cache}")
        if model.group_size != processor.group_size:
            raise ValueError(
                f"the model groups {model.group_size} speech frames per LLM step (audio_config.group_size) "
                f"but the processor {processor.group_size} (audio_group_size); they must be the same"
            )
        self.model = model.eval()
        self.processor = processor
        self.vocoder = vocoder
        self.speech_tokenizer = speech_tokenizer
        self.hop_tokens = hop_tokens
        self.hop_growth = hop_growth
        self.max_hop_tokens = max_hop_tokens
        self.prefix_cache = prefix_cache
        self._prefixes: OrderedDict[tuple, PromptPrefix] = OrderedDict()
        if plan_speech is None:
            plan_speech = getattr(model.generation_config, "plan_speech", False)
        if not isinstance(plan_speech, bool):
            raise ValueError(f"plan_speech must be True, False or None (the folder's), got {plan_speech!r}")
        self.plan_speech = plan_speech
        self.speech_timing = speech_timing

    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike, hop_tokens: int = 15, quantize: str | None = None, **options: Any
    ) -> Pipeline:
        """Load a pipeline folder (``loaders``: the files it holds; a missing or malformed one is named);
        quantize: "int8" or "int4" weights for the shared LLM and the SRH (``quantize``), None: as saved;
        ``options``: ``hop_growth``, ``max_hop_tokens``, ``prefix_cache``, ``plan_speech``,
        ``speech_timing`` (see the class; ``speech_timing=None`` leaves the folder's table out)."""
        parts = vars(load_parts(folder))
        pipe = cls(**{**parts, **options}, hop_tokens=hop_tokens)
        if quantize is not None:
            pipe.quantize(quantize)
        return pipe

    def quantize(self, scheme: str, group_size: int = 32) -> int:
        """Weight-only ``scheme`` ("int8" or "int4", ``group_size`` inputs per int4 group) for the shared
        LLM and the SRH, in place (``funaudiochat.drsr.quantization``); returns the layers replaced."""
        from funaudiochat.drsr.quantization import quantize_weights

        count = quantize_weights(self.model, scheme, group_size)
        self.clear_prefix_cache()
        return count

    @classmethod
    def random(cls, seed: int = 0, hop_tokens: int = 15) -> Pipeline:
        """A seeded, tiny, random pipeline: every part real, the answers meaningless (tests, and the
        command line before the demo model exists)."""
        return cls(**vars(random_parts(seed)), hop_tokens=hop_tokens)

    def save_pretrained(self, folder: str | os.PathLike, card: str | None = None) -> None:
        """Write the pipeline folder (atomically; ``card``: the model card's text)."""
        save_parts(self, folder, card)

    # -- requests -------------------------------------------------------------------------------------------

    def chat(self, request: Request | Sequence[Request] | None = None, /, **fields: Any) -> Any:
        """One reply for a ``Request`` (or for ``Request(**fields)``), or a list of replies for a list of
        requests, which decode together in batches of equal settings (each reply equal to its own run)."""
        if isinstance(request, list | tuple):
            if fields:
                raise ValueError("give a list of Requests, or keyword fields for one request, not both")
            return self._chat_many(list(request))
        return self._chat_many([self._request(request, fields)])[0]

    def stream(self, request: Request | None = None, /, **fields: Any) -> Iterator[Event]:
        """Yield ``TextDelta`` and ``AudioChunk`` events as the reply is made, then ``Done`` with the reply
        (equal to what ``chat`` returns for the same request)."""
        request = self._request(request, fields)
        batch = ReplyBatch(self)
        for _, event in batch.add(request):
            yield event
        while batch.rows:
            for _, event in batch.step():
                yield event

    def set_hops(self, hop_tokens: int, hop_growth: int = 1, max_hop_tokens: int | None = None) -> None:
        """The vocoder's hop schedule from now on (validated; arguments as the class's)."""
        check_hops(hop_tokens, hop_growth, max_hop_tokens)
        self.hop_tokens, self.hop_growth, self.max_hop_tokens = hop_tokens, hop_growth, max_hop_tokens

    def clear_prefix_cache(self) -> None:
        """Forget the computed system turns (after the model's weights changed)."""
        self._prefixes.clear()

    # -- inside ---------------------------------------------------------------------------------------------

    def _prefix(self, inputs: dict[str, torch.Tensor], config: DecodingConfig) -> PromptPrefix | None:
        """The computed system turn shared by every row of ``inputs`` (made and kept on first use), or None
        when the rows do not share one unpadded (or the cache is off)."""
        if not self.prefix_cache:
            return None
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        n = system_turn_length(ids[0], self.processor.token_ids.im_start)
        if n is None or not bool(mask[:, :n].all()) or not bool((ids[:, :n] == ids[0, :n]).all()):
            return None
        speech = not config.disable_speech
        key = (tuple(ids[0, :n].tolist()), config.fast_decode, speech)
        prefix = self._prefixes.get(key)
        if prefix is None:
            prefix = PromptPrefix.build(self.model, ids[0, :n], growing=config.fast_decode, speech=speech)
            self._prefixes[key] = prefix
            while len(self._prefixes) > self.prefix_cache:
                self._prefixes.popitem(last=False)
        self._prefixes.move_to_end(key)
        return prefix

    @property
    def _pad(self) -> int:
        return self.model.config.text_config.pad_token_id

    def _request(self, request: Request | None, fields: dict[str, Any]) -> Request:
        if request is None:
            return Request(**fields)
        if fields:
            return replace(request, **fields)
        if not isinstance(request, Request):
            raise ValueError(f"expected a Request, got {type(request).__name__}")
        return request

    def _chat_many(self, requests: list[Request]) -> list[Any]:
        if not requests:
            raise ValueError("chat needs at least one request")
        replies: list[Reply | None] = [None] * len(requests)
        groups: dict[Any, list[int]] = {}
        for i, request in enumerate(requests):  # one batch per decoding setting (seeds may differ)
            groups.setdefault(batch_key(request), []).append(i)
        for members in groups.values():
            for i, reply in zip(members, self._chat_batch([requests[i] for i in members]), strict=True):
                replies[i] = reply
        return replies

    def _chat_batch(self, requests: list[Request]) -> list[Reply]:
        start = time.perf_counter()
        speakers = [resolve_voice(r.voice, self.vocoder.speakers, self.speech_tokenizer) for r in requests]
        inputs = self._inputs(requests)
        config = replace(
            requests[0].sampling.decoding(requests[0].speaks), seed=[r.sampling.seed for r in requests]
        )
        plan = self.plans(requests)
        config = self.spoken_config(config, plan)
        state, step = prefill(self.model, inputs, config, self._prefix(inputs, config), plan)
        first_text = time.perf_counter() - start
        while not bool(state.finished.all()):
            decode_step(self.model, state)
        replies = []
        for row, (request, speaker) in enumerate(zip(requests, speakers, strict=True)):
            ids = [t for t in state.generated_text(row).tolist() if t != self._pad]
            codes = real_codes(state.speech[row])
            audio = None
            if request.speaks:
                audio = self.vocoder.synthesize(
                    codes,
                    speaker,
                    chunk_tokens=self.hop_tokens,
                    chunk_growth=self.hop_growth,
                    max_chunk_tokens=self.max_hop_tokens,
                )
            timings = Timings(first_text_s=first_text)
            replies.append(self._reply(ids, codes, audio, timings))
        total = time.perf_counter() - start
        for reply in replies:
            reply.timings.total_s = total
            reply.timings.first_audio_s = total if reply.audio is not None else None
        return replies

    def spoken_config(self, config: DecodingConfig, plans: list | None) -> DecodingConfig:
        """``config`` for a batch with ``plans`` (``plans``): laid-out plans are written token by token."""
        scheduled = plans is not None and self.speech_timing is not None
        return replace(config, plan_exact=True) if scheduled else config

    def plans(self, requests: list[Request]) -> list[torch.Tensor | None] | None:
        """The planned text of each spoken request (its S2T reply's ids, the end token dropped; with
        ``speech_timing``, laid out with ``<|sil|>`` at the slots of its words), or None when the pipeline
        does not plan speech or no request speaks."""
        if not self.plan_speech or not any(r.speaks for r in requests):
            return None
        written = [replace(r, mode="s2t") for r in requests]
        inputs = self._inputs(written)
        config = replace(  # the silence weight belongs to the spoken pass, where the words get their places
            written[0].sampling.decoding(False), seed=[r.sampling.seed for r in written], sil_scale=1.0
        )
        state, _ = prefill(self.model, inputs, config, self._prefix(inputs, config))
        while not bool(state.finished.all()):
            decode_step(self.model, state)
        plans: list[torch.Tensor | None] = []
        for row, request in enumerate(requests):
            ids = self._before_end([t for t in state.generated_text(row).tolist() if t != self._pad])
            if self.speech_timing is not None:
                text = self.processor.tokenizer.decode(ids, skip_special_tokens=True)
                ids = self.speech_timing.layout(text, self.processor.tokenizer)
            plans.append(torch.tensor(ids, dtype=torch.long) if request.speaks else None)
        return plans

    def _reply(self, ids: list[int], codes: torch.Tensor, audio, timings: Timings) -> Reply:
        text = self._visible_text(ids)
        try:
            calls = parse_tool_calls(text)
        except ValueError:  # a malformed call stays in the text; there are no parsed calls to act on
            calls = []
        if audio is not None:
            timings.audio_s = audio.numel() / VOCODER_SAMPLE_RATE
        return Reply(text.strip(), calls, ids, codes, audio, timings)

    def _before_end(self, ids: list[int]) -> list[int]:
        """``ids`` up to their first end token (``text_config.eos_token_id``: one id or a list)."""
        eos = self.model.config.text_config.eos_token_id
        ends = set(eos) if isinstance(eos, list | tuple) else {eos}
        return ids[: next((i for i, t in enumerate(ids) if t in ends), len(ids))]

    def _visible_text(self, ids: list[int]) -> str:
        """The text of ``ids`` up to the end token, special tokens dropped; a trailing incomplete UTF-8
        character (a byte-level token cut mid-character) is held back."""
        text = self.processor.tokenizer.decode(self._before_end(ids), skip_special_tokens=True)
        return text.rstrip("\ufffd")

    def prompt(self, request: Request) -> tuple[str, list[Any]]:
        """The ChatML prompt of ``request`` and its audios, in order."""
        if request.tools:
            system = request.system or function_calling_prompt(list(request.tools))
        else:
            system = request.system or (DEFAULT_S2M_PROMPT if request.speaks else DEFAULT_S2T_PROMPT)
        messages: list[dict[str, Any]] = []
        for turn in request.history:
            if turn.role == "assistant" and request.history_speech and turn.speech_codes:
                spoken = SpokenReply(turn.speech_codes, turn.text)
                messages.append({"role": "assistant", "content": [{"type": "audio", "audio": spoken}]})
            elif turn.role == "assistant":
                messages.append({"role": "assistant", "content": turn.text})
            else:
                messages.append({"role": "user", "content": _user_content(turn.audio, turn.text)})
        text = ASR_INSTRUCTION if request.mode == "asr" and not request.text else request.text
        messages.append({"role": "user", "content": _user_content(request.audio, text)})
        prompt = self.processor.apply_chat_template(messages, system_prompt=system)
        return prompt, self.processor.audios_from_messages(messages)

    def _inputs(self, requests: list[Request]) -> dict[str, torch.Tensor]:
        prompts, audios = [], []
        for request in requests:
            prompt, audio = self.prompt(request)
            prompts.append(prompt)
            audios.extend(audio)
        inputs = dict(self.processor(prompts, audio=audios or None))
        limit = self.model.config.text_config.max_position_embeddings
        longest = int(inputs["attention_mask"].sum(-1).max())
        most = max(r.sampling.max_new_tokens for r in requests)
        if longest + most > limit:
            raise ValueError(
                f"the prompt (history included) takes {longest} positions and the reply may take "
                f"{most} (max_new_tokens): {longest + most} is more than the model's context of {limit} "
                "positions; drop early turns of the history or lower max_new_tokens"
            )
        return inputs


def _user_content(audio, text: str | None) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    if audio is not None:
        content.append({"type": "audio", "audio": audio})
    if text:
        content.append({"type": "text", "text": text})
    return content


def load_pipeline(folder: str | os.PathLike, hop_tokens: int = 15) -> Pipeline:
    """``Pipeline.from_pretrained``."""
    return Pipeline.from_pretrained(folder, hop_tokens)


def random_pipeline(seed: int = 0) -> Pipeline:
    """``Pipeline.random``."""
    return Pipeline.random(seed)


def save_pipeline(pipe: Pipeline, folder: str | os.PathLike, card: str | None = None):
    """Write ``pipe`` as a pipeline folder (see ``loaders``); returns its path."""
    return save_parts(pipe, folder, card)
