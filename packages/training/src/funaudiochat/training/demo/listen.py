"""An independent English speech recogniser to judge the demo model's spoken answers: pocketsphinx (its US
English acoustic model and CMUdict, shipped in the wheel; nothing is downloaded) over a closed vocabulary.

    from funaudiochat.training.demo.listen import Recognizer
    rec = Recognizer(["Seven plus three is ten.", "Yes, nine is more than two."])
    rec.transcribe(wav, 22050)     # 1-D float waveform in [-1, 1] -> "seven plus three is ten"

Decoding uses a trigram language model of the given phrases (absolute discounting, backing off to the
unigrams of their words), so any sequence of the vocabulary words can come out, not only the phrases: a wrong
answer ("seven plus three is eleven") is heard as said. Measured on espeak-ng speech (en-us+f3, 160 words/min)
of 30 phrases and of 10 new sentences of their words, word error rates: trigram 0.08 / 0.12 (kept), bigram
0.12 / 0.16, unigram 0.52 / 0.51, a JSGF grammar of any word sequence (``(<w>)+``) 0.90 / 0.78 and ~50x
slower. A grammar of the exact phrases scores 0.01 on them but 0.51 on the new sentences: it turns a wrong
answer into the nearest right one, useless to judge. The model's bias remains: one new sentence of the 10
("a spider has six legs") was heard as the phrase ("... eight legs").
"""

from __future__ import annotations

import math
import re
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torchaudio

SAMPLE_RATE = 16_000  # what the acoustic model takes
DISCOUNT = 0.2  # absolute discount of the language model's counts (0.1-0.3 measured about the same)


def words_of(text: str) -> list[str]:
    """Lower-case words of ``text``, punctuation dropped (apostrophes inside words kept: "don't")."""
    return [w.strip("'") for w in re.findall(r"[a-z0-9']+", text.lower()) if w.strip("'")]


def pcm16(audio: torch.Tensor, sample_rate: int) -> bytes:
    """A mono float waveform ``(T,)`` in [-1, 1] at ``sample_rate`` Hz as the decoder's input: 16 kHz,
    16-bit little-endian PCM bytes."""
    if sample_rate != SAMPLE_RATE:
        audio = torchaudio.functional.resample(audio, sample_rate, SAMPLE_RATE)
    return (audio.clamp(-1.0, 1.0) * 32767.0).round().to(torch.int16).numpy().tobytes()


def _arpa(sentences: list[list[str]], order: int = 3) -> str:
    """An ARPA back-off n-gram model of ``sentences``: maximum-likelihood unigrams, higher orders with counts
    lowered by ``DISCOUNT`` and the freed mass given to the next lower order through the back-off weights."""
    counts = [Counter() for _ in range(order + 1)]
    for sentence in sentences:
        s = ["<s>", *sentence, "</s>"]
        for n in range(1, order + 1):
            counts[n].update(tuple(s[i : i + n]) for i in range(len(s) - n + 1))
    total = sum(c for g, c in counts[1].items() if g != ("<s>",))
    prob = {g: c / total for g, c in counts[1].items()}
    prob[("<s>",)] = 0.0  # a sentence start is never predicted
    backoff = {}
    for n in range(2, order + 1):
        context_total, context_types = Counter(), Counter()
        for g, c in counts[n].items():
            context_total[g[:-1]] += c
            context_types[g[:-1]] += 1
        for g, c in counts[n].items():
            prob[g] = (c - DISCOUNT) / context_total[g[:-1]]
        lower = Counter()
        for g in counts[n]:
            lower[g[:-1]] += prob[g[1:]]
        for h, t in context_total.items():
            backoff[h] = (DISCOUNT * context_types[h] / t) / (1.0 - lower[h])
    lines = ["\\data\\", *(f"ngram {n}={len(counts[n])}" for n in range(1, order + 1))]
    for n in range(1, order + 1):
        lines += ["", f"\\{n}-grams:"]
        for g in sorted(counts[n]):
            logp = math.log10(prob[g]) if prob[g] > 0 else -99.0
            bow = f" {math.log10(backoff.get(g, 1.0)):.6f}" if n < order else ""
            lines.append(f"{logp:.6f} {' '.join(g)}{bow}")
    return "\n".join([*lines, "", "\\end\\", ""])


# Words of the demo corpus that CMUdict lacks, in its ARPAbet (checked by hand against similar entries).
EXTRA_PRONUNCIATIONS = {"oink": "OY NG K"}


class Recognizer:
    """A pocketsphinx decoder whose vocabulary is the words of ``phrases`` (see ``words_of``), with a trigram
    language model of the phrases. Pronunciations come from pocketsphinx's dictionary (CMUdict), then from
    ``EXTRA_PRONUNCIATIONS``; raises ValueError naming the words in neither (no guessed pronunciation, so
    spell numbers out: "ten", not "10")."""

    def __init__(self, phrases: Sequence[str]):
        import pocketsphinx

        sentences = [w for w in (words_of(p) for p in phrases) if w]
        if not sentences:
            raise ValueError("Recognizer needs at least one phrase with words")
        self.vocabulary = frozenset(w for s in sentences for w in s)
        model = Path(pocketsphinx.get_model_path("en-us"))
        entries = []  # the dictionary's lines for the vocabulary, alternative pronunciations ("two(2)") too
        with open(model / "cmudict-en-us.dict", encoding="utf-8") as f:
            for line in f:
                if line.split(maxsplit=1)[0].split("(")[0] in self.vocabulary:
                    entries.append(line)
        missing = self.vocabulary - {line.split(maxsplit=1)[0].split("(")[0] for line in entries}
        entries += [
            f"{word} {EXTRA_PRONUNCIATIONS[word]}\n"
            for word in sorted(missing)
            if word in EXTRA_PRONUNCIATIONS
        ]
        missing -= set(EXTRA_PRONUNCIATIONS)
        if missing:
            raise ValueError(f"words not in the pocketsphinx dictionary: {', '.join(sorted(missing))}")
        with tempfile.TemporaryDirectory() as tmp:  # the decoder reads both files when it is made
            (Path(tmp) / "vocab.dict").write_text("".join(entries), encoding="utf-8")
            (Path(tmp) / "phrases.arpa").write_text(_arpa(sentences), encoding="utf-8")
            self._decoder = pocketsphinx.Decoder(
                hmm=str(model / "en-us"),
                dict=str(Path(tmp) / "vocab.dict"),
                lm=str(Path(tmp) / "phrases.arpa"),
                samprate=SAMPLE_RATE,
                loglevel="ERROR",
            )

    def transcribe(self, audio: torch.Tensor | np.ndarray, sample_rate: int) -> str:
        """The words heard in one utterance: ``audio`` is a mono float waveform in [-1, 1], shape (T,) or
        (1, T), at ``sample_rate`` Hz (resampled to 16 kHz, then 16-bit). Returns lower-case words joined by
        single spaces, "" when nothing is recognised."""
        x = torch.as_tensor(audio, dtype=torch.float32).detach().cpu()
        if x.ndim == 2 and x.shape[0] == 1:
            x = x[0]
        if x.ndim != 1:
            raise ValueError(f"expected a mono waveform of shape (T,) or (1, T), got {tuple(x.shape)}")
        if x.numel() == 0:
            return ""
        pcm = pcm16(x, sample_rate)
        self._decoder.start_utt()
        self._decoder.process_raw(pcm, full_utt=True)
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        return " ".join(hyp.hypstr.split()) if hyp is not None else ""
