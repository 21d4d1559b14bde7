"""Training step of a demo build's speech model on its own conversations, the Speech Refined Head
decoding only the batch rows with speech targets (the default) against every row (as before 2026-12-07).

The SRH is a causal decoder over the whole sequence at ``k`` sub-frames per LLM position, text included,
so a text reply's row (an S2T, transcription or tool-call conversation in a mixed batch) costs as much
head as a spoken one while no loss reads it. Both variants give the same loss and gradients
(tests/drsr/test_modeling.py). The baseline keeps every row by selecting the first position of each row
that has none and dropping those logits again (a few extra rows of the 6561-way product: negligible).

Reported: rows with speech targets per batch, seconds per training step (forward, backward, AdamW; the
tower frozen, as in Core-Cocktail) of each variant, the two taking turns on the same ``--rows``
conversations, and the median of the per-step ratios baseline / default.

    python tools/bench/srh_rows.py --run runs/repro [--steps 12] [--rows 8] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import inspect
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def every_row(head):
    """``head.forward`` (a ``SpeechRefinedHead``) that decodes every row of ``select``'s batch."""
    forward = head.forward

    def decode(conditioning, prev_ids, attention_mask=None, position_ids=None, select=None):
        if select is None:
            return forward(conditioning, prev_ids, attention_mask, position_ids, select)
        empty = ~select.any(1)
        dummy = torch.zeros_like(select)
        dummy[empty, 0] = True
        logits = forward(conditioning, prev_ids, attention_mask, position_ids, select | dummy)
        return logits[~dummy[select | dummy]]

    return decode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished demo build (tools/train_demo.py)")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per variant (after 2 untimed)")
    parser.add_argument("--rows", type=int, default=8, help="conversations per step")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path("bench-results/srh_rows.json"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tools" / "experiments"))
    from frame_rate import run_settings, speech_spec
    from funaudiochat.training.llm.data import SpokenChatDataModule
    from funaudiochat.training.llm.module import build_model

    torch.set_num_threads(args.threads)
    settings = run_settings(args.run)
    tower = args.run / "tower_match" / "audio_encoder.safetensors"
    model = build_model(speech_spec(args.run, tower, settings.group_size)).train()
    for name, param in model.named_parameters():
        param.requires_grad = not name.startswith("continuous_audio_tower.")
    data = SpokenChatDataModule(
        train=str(args.run / "conversations" / "train.jsonl"),
        processor=str(args.run / "text_tokenizer"),
        group_size=settings.group_size,
    )
    data.setup()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.0)
    accepted = set(inspect.signature(model.forward).parameters)
    head = model.audio_invert_tower
    variants = {"default": head.forward, "every_row": every_row(head)}
    decoded_rows: list[int] = []
    head.crq_transformer.register_forward_hook(
        lambda module, a, kwargs, out: decoded_rows.append(kwargs["inputs_embeds"].shape[0]), with_kwargs=True
    )
    draw = random.Random(0)
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    losses: dict[str, list[float]] = {name: [] for name in variants}
    spoken_rows = []
    for index in range(args.steps + 2):
        batch = data.collate([data.train_set[draw.randrange(len(data.train_set))] for _ in range(args.rows)])
        order = list(variants) if index % 2 == 0 else list(reversed(variants))
        for name in order:
            head.forward = variants[name]
            decoded_rows.clear()
            start = time.perf_counter()
            out = model(**{key: value for key, value in batch.items() if key in accepted})
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            if index >= 2:
                seconds[name].append(time.perf_counter() - start)
                losses[name].append(float(out.loss.detach()))
                if name == "default":
                    spoken_rows.append(decoded_rows[0] if decoded_rows else 0)
    head.forward = variants["default"]
    ratios = [b / a for a, b in zip(seconds["default"], seconds["every_row"], strict=True)]
    result = {
        "run": str(args.run),
        "group_size": settings.group_size,
        "rows": args.rows,
        "steps": args.steps,
        "threads": args.threads,
        "spoken_rows_per_batch": statistics.mean(spoken_rows),
        "default_seconds_per_step": statistics.median(seconds["default"]),
        "every_row_seconds_per_step": statistics.median(seconds["every_row"]),
        "ratio_every_row_over_default": statistics.median(ratios),
        "largest_loss_difference": max(
            abs(a - b) for a, b in zip(losses["default"], losses["every_row"], strict=True)
        ),
    }
    print(json.dumps(result, indent=2))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
