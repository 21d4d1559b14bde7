"""Does the SRH learn faster when its speech-token table is larger? The same SRH training from the same
model with the table multiplied by each scale; held-out loss of the reply's word codes as it goes.

    python tools/experiments/srh_table_scale.py --model runs/demo_tok2/pre_alignment/run/model \
        --processor runs/demo_tok2/text_tokenizer \
        --train runs/demo_tok2/conversations/train.jsonl \
        --heldout runs/demo_tok2/conversations/heldout.jsonl \
        [--scales 1,8] [--steps 300] [--every 100] [--out scale.json]

The table (``audio_tower.embed_tokens``, tied to the SRH's head) is the SRH's previous-token input, added to
its conditioning after pre-matching; ``tools/experiments/srh_probe.py`` shows whether the head uses it.
Each scale trains the SRH and the speech grouping alone (the LLM and the listening path frozen, as the
demo's pre-alignment) on random batches of spoken replies, with the same seed, and reports the mean
teacher-forced loss of the word codes (``srh_probe.CONTENT``) on the first ``--rows`` spoken held-out
replies every ``--every`` steps.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import random
import sys
import time
from pathlib import Path


def _probe_module():
    spec = importlib.util.spec_from_file_location("srh_probe", Path(__file__).with_name("srh_probe.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def word_code_loss(model, data, accepted: set) -> float:
    """Mean teacher-forced loss of the ``CONTENT`` codes of every reply in ``data``."""
    import torch
    import torch.nn.functional as F

    probe = _probe_module()
    losses = []
    model.eval()
    with torch.no_grad():
        for index in range(len(data.train_set)):
            batch = data.collate([data.train_set[index]])
            out = model(**{k: v for k, v in batch.items() if k in accepted}, return_speech_logits=True)
            logits, codes = probe.reply_codes(out, model.config.ignore_index)
            if len(codes) > probe.CONTENT.start:
                losses.append(float(F.cross_entropy(logits[probe.CONTENT], codes[probe.CONTENT])))
    model.train()
    return sum(losses) / len(losses)


def train_scale(args, scale: float, train, heldout) -> list[dict]:
    import torch
    from funaudiochat.drsr import FunAudioChatForConditionalGeneration
    from funaudiochat.training.demo.model_stages import LISTENING_FROZEN_MODULES

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    model = FunAudioChatForConditionalGeneration.from_pretrained(str(args.model)).train()
    with torch.no_grad():
        model.audio_tower.embed_tokens.weight.mul_(scale)
    for name, param in model.named_parameters():
        param.requires_grad = not any(name == f or name.startswith(f + ".") for f in LISTENING_FROZEN_MODULES)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0
    )
    accepted = set(inspect.signature(model.forward).parameters)
    curve, start = [], time.perf_counter()
    for step in range(args.steps + 1):
        if step % args.every == 0 or step == args.steps:
            loss = word_code_loss(model, heldout, accepted)
            curve.append(
                {"step": step, "heldout_word_code_loss": loss, "seconds": time.perf_counter() - start}
            )
            print(f"scale {scale:g} step {step}: held-out word-code loss {loss:.3f}", flush=True)
        if step == args.steps:
            break
        rows = [train.train_set[rng.randrange(len(train.train_set))] for _ in range(args.batch)]
        batch = train.collate(rows)
        out = model(**{k: v for k, v in batch.items() if k in accepted})
        optimizer.zero_grad()
        out.speech_loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return curve


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a checkpoint folder (official layout)")
    parser.add_argument("--processor", type=Path, help="processor folder (default: --model)")
    parser.add_argument(
        "--train", type=Path, required=True, help="conversations to train on (spoken replies)"
    )
    parser.add_argument("--heldout", type=Path, required=True, help="conversations to measure on")
    parser.add_argument("--scales", default="1,8", help="comma-separated factors of the speech-token table")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=100, help="measure every this many steps")
    parser.add_argument("--batch", type=int, default=16, help="spoken replies per step")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--rows", type=int, default=24, help="held-out spoken replies measured")
    parser.add_argument("--train-rows", type=int, default=100000, help="spoken replies to draw from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the curves as JSON here")
    args = parser.parse_args(argv)
    scales = [float(s) for s in args.scales.split(",")]
    if not scales or any(s <= 0 for s in scales) or args.steps < 1 or args.every < 1 or args.batch < 1:
        parser.error("--scales must be positive numbers; --steps, --every, --batch at least 1")
    import torch

    probe = _probe_module()
    processor = args.processor or args.model
    train = probe.speech_rows(args.train, processor, args.train_rows)
    heldout = probe.speech_rows(args.heldout, processor, args.rows)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = {str(scale): train_scale(args, scale, train, heldout) for scale in scales}
    finally:
        torch.set_num_threads(threads)
    if args.out:
        args.out.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **result}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
