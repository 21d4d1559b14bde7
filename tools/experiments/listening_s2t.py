"""Does a speech model understand spoken questions? Its S2T answers (greedy) to the held-out questions
(held-out phrasings in held-out voices) or to training questions, scored by their key as
``tools/eval_spoken_qa.py`` scores S2T. Takes any model folder (config.json + safetensors + text
tokenizer), such as pre-alignment's listening fit, which has no vocoder yet.

    python tools/experiments/listening_s2t.py --model runs/demo/pre_alignment/listen/model --run runs/demo \
        [--limit 40] [--questions heldout|train|train_heldout_voices] [--transcribe] [--out s2t.json]

``--questions train_heldout_voices``: the training questions spoken in the held-out voices (spoken into the
run folder the first time, ``speech_stages.speak_training_in_heldout_voices``): what the voices alone cost.

``--transcribe`` also asks for transcripts (``asr`` mode) of the same questions and of the held-out
transcription sentences: word error rates against their words.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def per_voice(run: Path, group: str, items: list, texts: list[str]) -> dict[str, float]:
    """Accuracy per question voice (the speech group's ``voices.jsonl``), worst first."""
    from funaudiochat.training.data.synth import question_voices
    from funaudiochat.training.demo.corpus import contains_key

    folder = run / "speech_tokenizer" / "data" / group
    if not (folder / "voices.jsonl").is_file():
        folder = run / "speech" / group  # (groups the speech stage spoke keep it there)
    voices = question_voices(folder)
    right: dict[str, list[bool]] = {}
    for item, text in zip(items, texts, strict=True):
        right.setdefault(voices[item.id], []).append(contains_key(text, item.key))
    return dict(sorted(((v, sum(r) / len(r)) for v, r in right.items()), key=lambda pair: pair[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a model folder (official layout)")
    parser.add_argument("--run", type=Path, required=True, help="the demo run folder (speech, corpus)")
    parser.add_argument("--limit", type=int, default=40, help="questions per task at most")
    parser.add_argument(
        "--questions", choices=("heldout", "train", "train_heldout_voices"), default="heldout"
    )
    parser.add_argument("--transcribe", action="store_true", help="also the word error rate of transcripts")
    parser.add_argument("--out", type=Path, help="write the results here (JSON)")
    args = parser.parse_args(argv)
    import torch
    from funaudiochat.chat import Pipeline, Request, Sampling
    from funaudiochat.chat.demo_eval import heldout_items, key_score, replies_of, word_error_rate
    from funaudiochat.chat.loaders import random_parts
    from funaudiochat.drsr import FunAudioChatForConditionalGeneration
    from funaudiochat.drsr.processing import FunAudioChatProcessor
    from funaudiochat.training.demo.text_stages import QA_TASKS

    torch.set_num_threads(1)
    model = FunAudioChatForConditionalGeneration.from_pretrained(args.model).float().eval()
    # S2T never reaches the vocoder: a random one stands in
    pipe = Pipeline(model, FunAudioChatProcessor.from_pretrained(args.model), random_parts().vocoder)
    group = {"heldout": "heldout", "train": "train_a"}.get(args.questions, args.questions)
    if args.questions == "train_heldout_voices":
        from funaudiochat.training.demo.speech_stages import speak_training_in_heldout_voices

        speak_training_in_heldout_voices(args.run, group)
    items = [i for i in heldout_items(args.run, args.limit, group) if i.task in QA_TASKS]
    start = time.perf_counter()
    requests = [Request(audio=i.audio, mode="s2t", sampling=Sampling(seed=0)) for i in items]
    replies = replies_of(pipe, requests)
    result = {
        "model": str(args.model),
        "questions": args.questions,
        **key_score(items, [r.text for r in replies]),
    }
    result["per_voice"] = per_voice(args.run, group, items, [r.text for r in replies])
    result["examples"] = [
        {"question": i.question, "answer": r.text} for i, r in list(zip(items, replies, strict=True))[:8]
    ]
    print(f"S2T {args.questions}: {100 * result['accuracy']:.1f} % (n={result['n']}) {result['per_task']}")
    print(
        "per voice: "
        + ", ".join(f"{voice} {100 * share:.0f} %" for voice, share in result["per_voice"].items())
    )
    if args.transcribe:
        sentences = [i for i in heldout_items(args.run, args.limit, group) if i.task == "asr"]
        for name, asked, words in (
            ("questions", items, [i.question for i in items]),
            ("sentences", sentences, [i.answer for i in sentences]),
        ):
            asr = [Request(audio=i.audio, mode="asr", sampling=Sampling(seed=0)) for i in asked]
            heard = [r.text for r in replies_of(pipe, asr)]
            result[f"asr_wer_{name}"] = word_error_rate(heard, words)
            result[f"asr_n_{name}"] = len(asked)
            pairs = list(zip(words, heard, strict=True))[:5]
            result[f"asr_examples_{name}"] = [{"said": w, "heard": h} for w, h in pairs]
            print(f"ASR word error rate, {name}: {100 * result[f'asr_wer_{name}']:.1f} % (n={len(asked)})")
    result["seconds"] = round(time.perf_counter() - start, 1)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
