"""Where the vocoder loses words: the reference answer audio, HiFT on its true mel, and its codes through
flow and HiFT, each heard by pocketsphinx.

    python tools/experiments/vocoder_parts.py --model runs/demo6/package --run runs/demo6 \
        [--limit 10] [--group heldout|train_a] [--out vocoder_parts.json]

For each held-out (or ``--group train_a``: training) question-answer pair with a spoken answer
(``demo_eval.heldout_items``, at most ``--limit`` per task), pocketsphinx (``listen.Recognizer`` over the
corpus's answers) transcribes (1) the espeak-ng answer audio itself, (2) the pipeline folder's HiFT run on
the mel of that audio (the vocoder's second half alone), (3) the answer's 25 Hz codes (from the run's
speech tokenizer) through the folder's flow and HiFT in its first speaker's voice (the whole round trip).
Each is right when it holds the answer's key (``demo_eval.key_score``). (1) -> (2) is what HiFT loses,
(2) -> (3) what the codes and the flow lose.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a pipeline folder (its flow and HiFT)")
    parser.add_argument("--run", type=Path, required=True, help="the demo build (corpus, speech)")
    parser.add_argument("--limit", type=int, default=10, help="pairs per task")
    parser.add_argument("--group", default="heldout", help="heldout, or train_a for training pairs")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import soundfile
    import torch
    import torchaudio.functional as AF
    from funaudiochat.chat.demo_eval import heldout_items, key_score
    from funaudiochat.chat.loaders import load_parts
    from funaudiochat.training.demo.corpus import SPLITS
    from funaudiochat.training.demo.listen import Recognizer
    from funaudiochat.training.demo.text_stages import QA_TASKS, corpus_pairs
    from funaudiochat.vocoder.mel import MelSpectrogram

    items = [i for i in heldout_items(args.run, args.limit, group=args.group) if i.task in QA_TASKS]
    recognizer = Recognizer(
        sorted({p["answer"] for p in corpus_pairs(args.run / "corpus", SPLITS, QA_TASKS)})
    )
    vocoder = load_parts(args.model).vocoder
    speaker = vocoder.speakers.names[0]
    mel_of = MelSpectrogram()
    heard: dict[str, list[str]] = {"reference_audio": [], "hift_on_true_mel": [], "codes_flow_hift": []}
    for item in items:
        audio, rate = soundfile.read(item.answer_audio, dtype="float32", always_2d=True)
        wave = torch.from_numpy(audio.mean(1))
        heard["reference_audio"].append(recognizer.transcribe(wave, rate))
        wave24 = AF.resample(wave, rate, 24000) if rate != 24000 else wave
        with torch.no_grad():
            rendered, _ = vocoder.hift.inference(mel_of(wave24[None]))
            heard["hift_on_true_mel"].append(recognizer.transcribe(rendered[0], 24000))
            through = vocoder.synthesize(torch.as_tensor(item.answer_codes), speaker)
        heard["codes_flow_hift"].append(recognizer.transcribe(through, 24000))
    result = {
        "model": str(args.model),
        "run": str(args.run),
        "group": args.group,
        "n": len(items),
        **{name: key_score(items, texts) for name, texts in heard.items()},
        "examples": [
            {"answer": item.answer, **{name: texts[index] for name, texts in heard.items()}}
            for index, item in enumerate(items[:8])
        ],
    }
    for name in heard:
        print(f"{name:<18} heard {result[name]['accuracy']:.1%} of {result[name]['n']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
