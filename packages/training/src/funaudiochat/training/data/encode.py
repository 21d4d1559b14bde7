"""One ``Conversation`` -> unpadded model tensors, in the official training layout (reference §4.1).

The text side is built with ``FunAudioChatProcessor``: its ChatML template renders the turns, its
``expand_audio_placeholders`` turns each ``<|AUDIO|>`` into one slot per LLM position of k = the
processor's ``group_size`` 25 Hz frames (user audio: ``ceil(num_frames / k)``, assistant speech:
``ceil((delay + len(codes)) / k)``; k = 5 officially, the LLM at 5 Hz; k = 1 puts it at 25 Hz), and its
tokenizer gives the ids. The model lays each reply's ``text_ids`` one token per slot, then ``<|sil|>``, and
its SRH predicts the k codes of each slot: nothing else in the data depends on k. As in LLaMA-Factory,
the prompt (system, user turns, ``<|im_start|>assistant\\n``) and each assistant reply
(``<|audio_bos|> <|AUDIO|> x N <|audio_eos|> <|im_end|> \\n``) are tokenized separately; ``labels`` are
the reply ids and -100 elsewhere.

Per audio, in order of appearance:
    speech_ids  [T] long: user audio ``6563 x num_frames``; assistant speech ``6561 x delay + codes``
    text_ids    [L] long: the entry's ``text`` tokenized (assistant reply; "" for user audio)
    text_mask   bool: ``text != ""``
    features    [128, F] float32: Whisper log-mel of each *user* audio (F = 100 frames per second),
                from the processor's frontend; ``feature_exist`` marks which audios have them
    waveform    [samples] float32 at 16 kHz of each user audio, when ``keep_waveforms``

Example:
    >>> encoder = ConversationEncoder(FunAudioChatProcessor(tokenizer))
    >>> item = encoder.encode(conversation)
    >>> item.input_ids.shape, len(item.speech_ids), item.features[0].shape
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from funaudiochat.drsr.processing import FunAudioChatProcessor
from funaudiochat.drsr.text_tokenizer import AUDIO_TOKEN
from funaudiochat.tokenizer import load_audio

from .records import Conversation, UserAudio

IGNORE_INDEX = -100


@dataclass
class EncodedConversation:
    """Unpadded tensors of one conversation (see the module docstring for shapes and meanings).

    ``input_ids`` / ``labels`` ``[S]`` long; ``speech_ids`` / ``text_ids`` / ``text_mask`` /
    ``feature_exist`` one per audio; ``features`` / ``waveforms`` one per user audio; ``duration`` in
    seconds; ``source`` names the example."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    speech_ids: list[torch.Tensor]
    text_ids: list[torch.Tensor]
    text_mask: list[bool]
    feature_exist: list[bool]
    features: list[torch.Tensor] = field(default_factory=list)
    waveforms: list[torch.Tensor] = field(default_factory=list)
    duration: float = 0.0
    source: str = ""


class ConversationEncoder:
    """Turns ``Conversation``s into ``EncodedConversation``s with a ``FunAudioChatProcessor``.

    Args:
        processor: gives the chat template, placeholder expansion, text tokenizer, log-mel frontend,
            sample rate, audio length limit and ``group_size`` (25 Hz frames per ``<|AUDIO|>`` slot).
        compute_features: compute the log-mel of user audio here (in the DataLoader worker).
        keep_waveforms: also keep the 16 kHz waveforms of user audio (e.g. to compute features on the
            accelerator, or for augmentation).
        max_length: longest accepted ``input_ids``; longer conversations raise ``ValueError`` (they are
            never cut: a cut through audio slots is the official issue #30 crash).
    """

    def __init__(
        self,
        processor: FunAudioChatProcessor,
        *,
        compute_features: bool = True,
        keep_waveforms: bool = False,
        max_length: int | None = None,
    ):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.ids = processor.token_ids
        self.group_size = processor.group_size
        self.compute_features = compute_features
        self.keep_waveforms = keep_waveforms
        self.max_length = max_length

    # ------------------------------------------------------------------------------------------- text

    def text_segments(self, conv: Conversation) -> list[tuple[str, bool]]:
        """ChatML text cut into ``(text, is_assistant_reply)`` pieces whose concatenation is the whole
        conversation: the prompt before each reply, then the reply (``content<|im_end|>\\n``)."""
        messages = [{"role": t.role, "content": t.content} for t in conv.turns]
        system = conv.system or None

        def render(upto: int, generation_prompt: bool) -> str:
            return self.processor.apply_chat_template(
                messages[:upto], add_generation_prompt=generation_prompt, system_prompt=system
            )

        pieces: list[tuple[str, bool]] = []
        done = ""
        for i, turn in enumerate(conv.turns):
            if turn.role != "assistant":
                continue
            prompt, whole = render(i, True), render(i + 1, False)
            if not prompt.startswith(done) or not whole.startswith(prompt):
                raise ValueError(
                    f"{conv.source}: the chat template does not render conversations incrementally "
                    "(each prompt must extend the previous text); cannot place the labels"
                )
            pieces += [(prompt[len(done) :], False), (whole[len(prompt) :], True)]
            done = whole
        return pieces

    def slot_counts(self, conv: Conversation) -> list[int]:
        """``<|AUDIO|>`` slots per audio, in order, at the processor's group size."""
        counts = []
        for audio in conv.audios:
            slots = audio.num_slots(self.group_size)
            if slots is None:
                raise ValueError(
                    f"{conv.source}: assistant speech of {audio.ref_path!r} has no codes; tokenize it first "
                    "(CodesCache.fill, or give the dataset a codes_cache)"
                )
            counts.append(slots)
        return counts

    def token_ids(self, conv: Conversation, check_length: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``input_ids [S]`` and ``labels [S]`` (long), without loading any audio; ``check_length``
        applies ``max_length``."""
        pieces = self.text_segments(conv)
        slots = self.slot_counts(conv)
        expanded = self.processor.expand_audio_placeholders([text for text, _ in pieces], slots)
        rows = self.tokenizer(expanded, add_special_tokens=False)["input_ids"]
        wanted = iter(slots)
        ids: list[int] = []
        labels: list[int] = []
        for (text, trained), row in zip(pieces, rows, strict=True):
            expected = sum(next(wanted) for _ in range(text.count(AUDIO_TOKEN)))
            found = sum(1 for t in row if t == self.ids.audio_token_index)
            if found != expected:
                raise ValueError(
                    f"{conv.source}: {found} {AUDIO_TOKEN} ids after tokenization where {expected} slots "
                    f"belong; the tokenizer must keep {AUDIO_TOKEN} one special token"
                )
            ids += row
            labels += row if trained else [IGNORE_INDEX] * len(row)
        if check_length and self.max_length is not None and len(ids) > self.max_length:
            raise ValueError(
                f"{conv.source}: {len(ids)} tokens, longer than max_length={self.max_length} (conversations "
                "are never cut; drop or split it)"
            )
        return torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long)

    def sequence_length(self, conv: Conversation) -> int:
        """Length of ``input_ids`` (no audio is read)."""
        return int(self.token_ids(conv, check_length=False)[0].shape[0])

    # ------------------------------------------------------------------------------------------ audio

    def load_user_audio(self, conv: Conversation) -> list[torch.Tensor]:
        """16 kHz float32 waveforms of the user audios, in order."""
        return [
            load_audio(a.path, self.processor.sample_rate, max_seconds=self.processor.max_audio_seconds)
            for a in conv.user_audios
        ]

    def features(self, waveforms: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Log-mel ``[n_mels, F_i]`` of each waveform (the processor's frontend)."""
        if not waveforms:
            return []
        with torch.no_grad():
            mel, lengths = self.processor.frontend.batch(list(waveforms))
        return [mel[i, :, : int(n)].float().contiguous() for i, n in enumerate(lengths.tolist())]

    # ----------------------------------------------------------------------------------------- encode

    def encode(self, conv: Conversation) -> EncodedConversation:
        """All tensors of ``conv`` (reads and featurizes its user audio)."""
        input_ids, labels = self.token_ids(conv)
        speech_ids, text_ids, text_mask, feature_exist = [], [], [], []
        texts = [a.text for a in conv.audios]
        tokenized = self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        for audio, ids in zip(conv.audios, tokenized, strict=True):
            speech_ids.append(torch.from_numpy(np.ascontiguousarray(audio.speech_ids(), dtype=np.int64)))
            text_ids.append(torch.tensor(ids, dtype=torch.long))
            text_mask.append(audio.text != "")
            feature_exist.append(isinstance(audio, UserAudio))
        waveforms = self.load_user_audio(conv) if (self.compute_features or self.keep_waveforms) else []
        return EncodedConversation(
            input_ids=input_ids,
            labels=labels,
            speech_ids=speech_ids,
            text_ids=text_ids,
            text_mask=text_mask,
            feature_exist=feature_exist,
            features=self.features(waveforms) if self.compute_features else [],
            waveforms=waveforms if self.keep_waveforms else [],
            duration=conv.duration,
            source=conv.source,
        )
