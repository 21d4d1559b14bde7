"""Word-aligned reply text for spoken answers: each word's text token sits at the LLM slot (5 Hz; 25 Hz at
group size 1) that starts saying it, with ``<|sil|>`` between (the "inner monologue" layout of moshi, here
inside the official data format: the reply text of an assistant audio entry simply contains the ``<|sil|>``
tokens).

Why: in the official layout the reply text fills the first slots, one token per slot, and runs ahead of its
speech (a five-word answer's text has ended before its second word is heard). The speech head is then told
*which word to say now* only through the LLM's state, and the demo model's small head did not learn to read
it there: free-running it picked the most common word onset and said the word that follows it in training.
Aligned, each word's token sits at the slot whose SRH conditioning ``h + s * E_text`` predicts the word's
first codes (the speech row opens with two BOS groups; the hidden state at slot p predicts group p + 1).
With the text read 20x louder (``srh_text_scale``) a new head free-running said 45 % of held-out replies word
for word against 0 % in the official layout (``docs/experiments/demo_model/README.md``, 2026-12-05).

    import soundfile as sf
    from funaudiochat.training.demo.reply_alignment import WordAligner, aligned_text
    audio, rate = sf.read("answer.wav", dtype="float32")
    starts = WordAligner().word_starts(audio, rate, "Seven plus three is ten.")  # seconds, one per word
    aligned_text("Seven plus three is ten.", starts, count_tokens)  # "<|sil|>Seven<|sil|> plus..."

Word starts come from pocketsphinx forced alignment (its US English model and CMUdict, in the wheel); where
it cannot align an answer, ``proportional_starts`` spreads the words over the speech by their letters.
``align_replies`` rewrites the spoken answers of a list of conversations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from funaudiochat.base.constants import GROUP_SIZE, SPEECH_DELAY
from funaudiochat.drsr.text_tokenizer import SIL_TOKEN as SIL

from .listen import EXTRA_PRONUNCIATIONS, SAMPLE_RATE, pcm16, words_of

CODE_RATE = 25  # speech codes per second


def aligned_text(
    text: str, starts: Sequence[float], count_tokens: Callable[[str], int], group_size: int = GROUP_SIZE
) -> str:
    """``text`` with ``<|sil|>`` inserted so that each word's token sits at the slot whose SRH conditioning
    says the word's first codes.

    text: the reply, words separated by spaces (punctuation stays with its word).
    starts: seconds from the start of the reply's speech, one per whitespace-separated piece of ``text``.
    count_tokens: the number of text tokens of a piece as tokenized in context (" seven" after a space).
    group_size: 25 Hz codes per LLM slot, k (5: 5 Hz slots; 1: 25 Hz), a divisor of the BOS delay.
    The speech row opens with ``SPEECH_DELAY`` (10) BOS codes, ``d = 10 / k`` slots, and the hidden state at
    slot p predicts speech group p + 1, so the code at ``c = start * 25`` is predicted at slot
    ``d - 1 + c // k``: the word goes there or, when the words before it still fill that slot, right after
    them; the text never moves earlier than that slot.
    """
    if group_size < 1 or SPEECH_DELAY % group_size:
        raise ValueError(f"group_size must divide the BOS delay of {SPEECH_DELAY} codes, got {group_size}")
    delay_slots = SPEECH_DELAY // group_size
    pieces = text.split()
    if len(pieces) != len(starts):
        raise ValueError(f"{len(starts)} start times for {len(pieces)} words of {text!r}")
    out: list[str] = []
    slot = 0
    for i, (piece, start) in enumerate(zip(pieces, starts, strict=True)):
        if start < 0:
            raise ValueError(f"start times must be >= 0, got {start} for {piece!r}")
        wanted = delay_slots - 1 + int(round(start * CODE_RATE, 6)) // group_size
        if wanted > slot:
            out.append(SIL * (wanted - slot))
            slot = wanted
        piece = piece if i == 0 else " " + piece
        out.append(piece)
        slot += count_tokens(piece)
    return "".join(out)


def proportional_starts(text: str, first: float, last: float) -> list[float]:
    """Start times spreading the pieces of ``text`` over the speech from ``first`` to ``last`` seconds in
    proportion to their letters (a space counts as one): the fallback when forced alignment fails."""
    pieces = text.split()
    weights = np.array([len(p) + 1 for p in pieces], dtype=np.float64)
    before = np.concatenate([[0.0], np.cumsum(weights)[:-1]])
    return [float(first + (last - first) * b / weights.sum()) for b in before]


class WordAligner:
    """pocketsphinx forced alignment of known text to its speech: the start of each word."""

    def __init__(self):
        import pocketsphinx

        model = Path(pocketsphinx.get_model_path("en-us"))
        self._decoder = pocketsphinx.Decoder(
            hmm=str(model / "en-us"),
            dict=str(model / "cmudict-en-us.dict"),
            samprate=SAMPLE_RATE,
            loglevel="FATAL",  # unknown words are reported by returning None
        )
        for word, phones in EXTRA_PRONUNCIATIONS.items():
            self._decoder.add_word(word, phones, True)

    def word_starts(self, audio: np.ndarray, sample_rate: int, text: str) -> list[float] | None:
        """Seconds at which each whitespace-separated piece of ``text`` starts in ``audio`` (mono float in
        [-1, 1], shape (T,)), or None when the aligner cannot place every word (unknown word, no path)."""
        import torch

        pieces = text.split()
        words = [words_of(p) for p in pieces]
        if not pieces or any(not w for w in words):
            return None
        x = torch.as_tensor(np.asarray(audio, dtype=np.float32))
        if x.ndim != 1:
            raise ValueError(f"expected a mono waveform of shape (T,), got {tuple(x.shape)}")
        pcm = pcm16(x, sample_rate)
        flat = [w for ws in words for w in ws]
        try:
            self._decoder.set_align_text(" ".join(flat))
            self._decoder.start_utt()
            self._decoder.process_raw(pcm, full_utt=True)
            self._decoder.end_utt()
            found = self._decoder.seg()
        except RuntimeError:  # a word outside the dictionary
            return None
        if found is None:  # no alignment path through the audio
            return None
        vocabulary = set(flat)
        segments = [s for s in found if s.word.split("(")[0] in vocabulary]
        if [s.word.split("(")[0] for s in segments] != flat:
            return None
        starts, index = [], 0
        for ws in words:  # a piece starts with its first word ("twenty-one")
            starts.append(segments[index].start_frame / 100.0)
            index += len(ws)
        return starts


def align_replies(
    conversations: Sequence, count_tokens: Callable[[str], int], group_size: int = GROUP_SIZE
) -> dict[str, int]:
    """Rewrite, in place, the text of every assistant speech with codes and a ``ref_path`` (the spoken
    answers) of ``conversations`` to ``aligned_text`` at ``group_size``. Answers said more than once are
    aligned once.
    Returns counts: ``aligned`` (forced alignment) and ``proportional`` (the fallback)."""
    import soundfile as sf

    from ..data.records import AssistantSpeech

    aligner = WordAligner()
    cache: dict[tuple[str, str], tuple[list[float], bool]] = {}
    counts = {"aligned": 0, "proportional": 0}
    for conversation in conversations:
        for speech in conversation.audios:
            if not isinstance(speech, AssistantSpeech) or speech.codes is None or not speech.ref_path:
                continue
            key = (speech.ref_path, speech.text)
            if key not in cache:
                audio, rate = sf.read(speech.ref_path, dtype="float32", always_2d=True)
                starts = aligner.word_starts(audio.mean(axis=1), rate, speech.text)
                found = starts is not None
                if starts is None:
                    starts = proportional_starts(speech.text, 0.0, len(speech.codes) / CODE_RATE)
                cache[key] = (starts, found)
            starts, found = cache[key]
            counts["aligned" if found else "proportional"] += 1
            speech.text = aligned_text(speech.text, starts, count_tokens, group_size)
    return counts
