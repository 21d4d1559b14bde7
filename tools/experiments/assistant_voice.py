"""Which espeak-ng voice should the demo assistant speak in? The one the independent recogniser hears best.

    python tools/experiments/assistant_voice.py --corpus runs/demo/corpus \
        --voices en-us+f3:160,en-us+f2:160,en-us+f5:160 [--answers 150] [--seed 0] [--out voices.json]

The S2S score of the demo model is what pocketsphinx (``funaudiochat.training.demo.listen.Recognizer``, its
own acoustic model, a trigram over the corpus answers) hears in the spoken answers, so the assistant voice
sets the ceiling of that score: a voice the recogniser mishears caps S2S however well the model speaks.
For each ``VOICE:SPEED`` this speaks the same seeded draw of ``--answers`` question-answering answers of the
corpus with espeak-ng and reports how often the recogniser hears the answer's key (the S2S criterion) and
the whole answer word for word.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import tempfile
from pathlib import Path


def parse_voices(text: str) -> list[tuple[str, int]]:
    """``"en-us+f2:160,en-gb:150"`` -> ``[("en-us+f2", 160), ("en-gb", 150)]``; ValueError names a bad one."""
    voices = []
    for item in text.split(","):
        voice, _, speed = item.strip().partition(":")
        if not voice or not speed.isdigit() or not 80 <= int(speed) <= 450:
            raise ValueError(f"voice {item!r}: expected VOICE:SPEED with SPEED in 80-450 words per minute")
        voices.append((voice, int(speed)))
    return voices


def score_voice(voice: str, speed: int, answers: list[dict], recognizer, folder: Path) -> dict:
    """How often ``recognizer`` hears each answer's key and its exact words in ``voice`` at ``speed``."""
    import soundfile
    import torch
    from funaudiochat.training.demo.corpus import contains_key
    from funaudiochat.training.demo.listen import words_of

    key = exact = 0
    for index, pair in enumerate(answers):
        wav = folder / f"{index}.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav)],
            input=pair["answer"].encode(),
            check=True,
            capture_output=True,
        )
        audio, rate = soundfile.read(wav, dtype="float32", always_2d=True)
        heard = recognizer.transcribe(torch.from_numpy(audio.mean(1)), rate)
        key += contains_key(heard, pair["key"])
        exact += words_of(heard) == words_of(pair["answer"])
    n = len(answers)
    return {"voice": voice, "speed": speed, "answers": n, "key_heard": key / n, "exact": exact / n}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="the demo run's corpus folder")
    parser.add_argument("--voices", required=True, help="comma-separated VOICE:SPEED (words per minute)")
    parser.add_argument("--answers", type=int, default=150, help="answers spoken per voice")
    parser.add_argument("--seed", type=int, default=0, help="seed of the answers' draw")
    parser.add_argument("--out", type=Path, help="write the scores as JSON here")
    args = parser.parse_args(argv)
    try:
        voices = parse_voices(args.voices)
    except ValueError as error:
        parser.error(str(error))
    if args.answers < 1:
        parser.error("--answers must be at least 1")
    from funaudiochat.training.demo.corpus import SPLITS
    from funaudiochat.training.demo.listen import Recognizer
    from funaudiochat.training.demo.text_stages import QA_TASKS, corpus_pairs

    pairs = corpus_pairs(args.corpus, SPLITS, QA_TASKS)
    if not pairs:
        parser.error(f"{args.corpus}: no question-answering pairs")
    recognizer = Recognizer([pair["answer"] for pair in pairs])
    answers = random.Random(args.seed).sample(pairs, min(args.answers, len(pairs)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for voice, speed in voices:
            rows.append(score_voice(voice, speed, answers, recognizer, Path(tmp)))
            row = rows[-1]
            print(f"{voice:>16} {speed:>4} wpm  key heard {row['key_heard']:6.1%}  exact {row['exact']:6.1%}")
    if args.out:
        args.out.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "voices": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
