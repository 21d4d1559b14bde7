"""Where the vocoder loses words: the reference answer audio, HiFT on its true mel, and its codes through
flow and HiFT, each heard by pocketsphinx.

    python tools/experiments/vocoder_parts.py --model runs/demo6/package --run runs/demo6 \
        [--limit 10] [--group heldout|train_a] [--flow-steps N] [--flow FILE] [--hift FILE] \
        [--out vocoder_parts.json]

For each held-out (or ``--group train_a``: training) question-answer pair with a spoken answer
(``demo_eval.heldout_items``, at most ``--limit`` per task), pocketsphinx (``listen.Recognizer`` over the
corpus's answers) transcribes (1) the espeak-ng answer audio itself, (2) the pipeline folder's HiFT run on
the mel of that audio (the vocoder's second half alone), (3) the answer's 25 Hz codes (from the run's
speech tokenizer) through the folder's flow and HiFT as the pipeline streams them (the whole round trip).
(1) and (3) are ``demo_eval.speech_ceilings``, the evaluation's own figures.
Each is right when it holds the answer's key (``demo_eval.key_score``). (1) -> (2) is what HiFT loses,
(2) -> (3) what the codes and the flow lose. ``--flow`` / ``--hift`` take those parts from other weights (a
``vocoder_flow`` / ``vocoder_hift`` stage's product; the flow keeps the folder's Euler steps), the rest of
the folder unchanged: two trainings of a vocoder part compared on the same model and items.
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
    parser.add_argument("--flow-steps", type=int, help="the flow's Euler steps (default: the folder's, 10)")
    parser.add_argument("--flow", type=Path, help="flow weights to use instead of the folder's")
    parser.add_argument("--hift", type=Path, help="HiFT weights to use instead of the folder's")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    for name in ("flow", "hift"):
        path = getattr(args, name)
        if path is not None and not path.is_file():
            raise SystemExit(f"--{name} {path}: no such file")

    import soundfile
    import torch
    import torchaudio.functional as AF
    from funaudiochat.chat import Pipeline
    from funaudiochat.chat.demo_eval import heldout_items, key_score, speech_ceilings
    from funaudiochat.training.demo.corpus import SPLITS
    from funaudiochat.training.demo.listen import Recognizer
    from funaudiochat.training.demo.text_stages import QA_TASKS, corpus_pairs
    from funaudiochat.vocoder.mel import MelSpectrogram

    items = [i for i in heldout_items(args.run, args.limit, group=args.group) if i.task in QA_TASKS]
    recognizer = Recognizer([p["answer"] for p in corpus_pairs(args.run / "corpus", SPLITS, QA_TASKS)])
    pipe = Pipeline.from_pretrained(args.model)
    if args.flow is not None:
        from funaudiochat.vocoder.loading import load_flow

        flow = load_flow(args.flow)
        flow.config.n_timesteps = pipe.vocoder.flow.config.n_timesteps
        pipe.vocoder.flow = flow.eval()
    if args.hift is not None:
        from funaudiochat.vocoder.loading import load_hift

        pipe.vocoder.hift = load_hift(args.hift).eval()
    if args.flow_steps is not None:
        if args.flow_steps < 1:
            raise SystemExit(f"--flow-steps must be >= 1, got {args.flow_steps}")
        pipe.vocoder.flow.config.n_timesteps = args.flow_steps
    # (1) and (3), as the evaluation measures them
    ceilings = speech_ceilings(pipe, items, recognizer)
    mel_of = MelSpectrogram()
    heard = []  # (2)
    for item in items:
        audio, rate = soundfile.read(item.answer_audio, dtype="float32", always_2d=True)
        wave = torch.from_numpy(audio.mean(1))
        wave24 = AF.resample(wave, rate, 24000) if rate != 24000 else wave
        with torch.no_grad():
            rendered, _ = pipe.vocoder.hift.inference(mel_of(wave24[None]))
        heard.append(recognizer.transcribe(rendered[0], 24000))
    result = {
        "model": str(args.model),
        "run": str(args.run),
        "group": args.group,
        "flow": str(args.flow or args.model / "flow.safetensors"),
        "hift": str(args.hift or args.model / "hift.safetensors"),
        "n": len(items),
        "reference_speech": ceilings["reference_speech"],
        "hift_on_true_mel": key_score(items, heard),
        "vocoder_round_trip": ceilings["vocoder_round_trip"],
        "examples": [
            {"answer": item.answer, "hift_on_true_mel": text}
            for item, text in list(zip(items, heard, strict=True))[:8]
        ],
    }
    for name in ("reference_speech", "hift_on_true_mel", "vocoder_round_trip"):
        print(f"{name:<18} heard {result[name]['accuracy']:.1%} of {result[name]['n']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
