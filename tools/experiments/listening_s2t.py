"""Does a speech model understand spoken questions? Its S2T answers (greedy) to the held-out questions
(held-out phrasings in held-out voices) or to training questions, scored by their key as
``tools/eval_spoken_qa.py`` scores S2T. Takes any model folder (config.json + safetensors + text
tokenizer), such as pre-alignment's listening fit, which has no vocoder yet.

    python tools/experiments/listening_s2t.py --model runs/demo/pre_alignment/listen/model --run runs/demo \
        [--limit 40] [--questions heldout|train] [--out s2t.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a model folder (official layout)")
    parser.add_argument("--run", type=Path, required=True, help="the demo run folder (speech, corpus)")
    parser.add_argument("--limit", type=int, default=40, help="questions per task at most")
    parser.add_argument("--questions", choices=("heldout", "train"), default="heldout")
    parser.add_argument("--out", type=Path, help="write the results here (JSON)")
    args = parser.parse_args(argv)
    import torch
    from funaudiochat.chat import Pipeline, Request, Sampling
    from funaudiochat.chat.demo_eval import heldout_items, key_score, replies_of
    from funaudiochat.chat.loaders import random_parts
    from funaudiochat.drsr import FunAudioChatForConditionalGeneration
    from funaudiochat.drsr.processing import FunAudioChatProcessor
    from funaudiochat.training.demo.text_stages import QA_TASKS

    torch.set_num_threads(1)
    model = FunAudioChatForConditionalGeneration.from_pretrained(args.model).float().eval()
    # S2T never reaches the vocoder: a random one stands in
    pipe = Pipeline(model, FunAudioChatProcessor.from_pretrained(args.model), random_parts().vocoder)
    group = "heldout" if args.questions == "heldout" else "train_a"
    items = [i for i in heldout_items(args.run, args.limit, group) if i.task in QA_TASKS]
    start = time.perf_counter()
    requests = [Request(audio=i.audio, mode="s2t", sampling=Sampling(seed=0)) for i in items]
    replies = replies_of(pipe, requests)
    result = {
        "model": str(args.model),
        "questions": args.questions,
        **key_score(items, [r.text for r in replies]),
    }
    result["examples"] = [
        {"question": i.question, "answer": r.text} for i, r in list(zip(items, replies, strict=True))[:8]
    ]
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(f"S2T {args.questions}: {100 * result['accuracy']:.1f} % (n={result['n']}) {result['per_task']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
