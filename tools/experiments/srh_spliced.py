"""More sentences for the Speech Refined Head to say: spliced replies in the assistant voice.

The head learns the training replies by heart (teacher-forced right, free-running derailed: see
docs/experiments/demo_model/README.md). As the audio encoder did with spliced questions, it may stop
learning sentences and learn words when it hears the same words in orders no training reply has. This
writes the rows for that fit:

    python tools/experiments/srh_spliced.py --run runs/demo6 --count 4000 --out runs/exp_srh/data \
        [--sentences renumbered]

``OUT/spliced/``: ``--count`` sentences spliced from 2-4-word spans of the training questions and answers
(``demo/spliced_speech.py``), or with ``--sentences renumbered`` training answers with other numbers in
them (never a held-out answer), spoken in the assistant voice at its speed; ``OUT/replies.jsonl``: the run's
spoken-reply rows (``RUN/pre_alignment/spoken_replies.jsonl``) followed by one row per spliced sentence,
each a copy of a spoken-reply row (its question audio and prompt) whose reply is the spliced sentence with
its codes from the run's speech tokenizer (and, when the run's replies are word-aligned,
``reply_alignment="words"``, its text aligned to its speech as the conversations stage aligns them). The
question does not ask for that reply: the rows are for a fit in which only the SRH and the speech grouping
learn (LLM and listening frozen), so what the head learns is to say the text it is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a demo build (runs/demo6)")
    parser.add_argument("--count", type=int, default=4000, help="spliced sentences")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--sentences",
        choices=["spliced", "renumbered"],
        default="spliced",
        help="spliced: 2-4-word spans of training questions and answers; renumbered: training answers with "
        "other numbers (never a held-out answer)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from funaudiochat.drsr.text_tokenizer import SIL_TOKEN
    from funaudiochat.tokenizer import SpeechTokenizer
    from funaudiochat.training.data import read_sharegpt, write_sharegpt
    from funaudiochat.training.data.synth import encode_files
    from funaudiochat.training.demo.reply_alignment import align_replies
    from funaudiochat.training.demo.speech_stages import ASSISTANT_SPEED, ASSISTANT_VOICE, token_counter
    from funaudiochat.training.demo.spliced_speech import renumber_sentences, speak_sentences, speak_spliced

    corpus = args.run / "corpus"
    pairs = [corpus / "pairs_train.jsonl"]
    voices, speeds = [ASSISTANT_VOICE], [ASSISTANT_SPEED]
    if args.sentences == "spliced":
        lines = speak_spliced(pairs, args.out / "spliced", args.count, voices, speeds, args.seed)
    else:
        answers = [json.loads(line)["answer"] for line in pairs[0].read_text().splitlines() if line.strip()]
        held_out = [
            json.loads(line)["answer"]
            for path in sorted(corpus.glob("pairs_heldout_*.jsonl"))
            for line in path.read_text().splitlines()
            if line.strip()
        ]
        sentences = renumber_sentences(answers, args.count, args.seed, exclude=held_out)
        lines = speak_sentences(sentences, args.out / "spliced", voices, speeds, args.seed)
    tokenizer = SpeechTokenizer.from_safetensors(
        args.run / "speech_tokenizer" / "speech_tokenizer.safetensors"
    ).eval()
    codes = encode_files(tokenizer, [line["audio"] for line in lines])
    spoken = read_sharegpt(args.run / "pre_alignment" / "spoken_replies.jsonl", check_audio=False)
    rng = random.Random(args.seed)
    added = []
    for line, reply_codes in zip(lines, codes, strict=True):
        template = rng.choice(spoken)
        reply = template.assistant_speech[0]
        audios = [
            dataclasses.replace(
                reply,
                text=line["text"],
                codes=reply_codes,
                ref_path=line["audio"],
                ref_duration=None,
                extra={},
            )
            if audio is reply
            else audio
            for audio in template.audios
        ]
        added.append(dataclasses.replace(template, audios=audios))
    if any(SIL_TOKEN in row.assistant_speech[0].text for row in spoken):
        counts = align_replies(added, token_counter(args.run / "text_tokenizer"))
        print(f"spliced replies aligned to their words: {counts}")
    write_sharegpt(args.out / "replies.jsonl", [*spoken, *added])
    print(f"{len(spoken)} spoken replies + {len(lines)} spliced -> {args.out / 'replies.jsonl'}")


if __name__ == "__main__":
    main()
