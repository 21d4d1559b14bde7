"""Training step of the speech LLM with the Speech Refined Head's logits computed only where there are
speech targets (the default) vs at every 25 Hz position (``return_speech_logits=True``, the official way).

The SRH head is a 6561-way product per 25 Hz position (``D x 6561``, tied to the speech embeddings); a
conversation trains speech on the assistant's audio only, so the prompt's positions (user turn, system
prompt, earlier turns) and the text after the speech pay for logits that no loss reads. Both variants
give the same loss and gradients (tests/drsr/test_modeling.py). The model is the 5 Hz one of
``drsr_training.py``; each batch row is ``--prompt`` tokens of untrained prompt (5 Hz positions), then
``--seconds`` of assistant speech. Reported: seconds per training step (forward, backward, AdamW), best
of ``--repeats``, the two variants taking turns step by step, and the ratio full / selected.

    python tools/bench/srh_loss.py [--seconds 12] [--prompt 60] [--batch 4] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from drsr_training import assistant_batch, build  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="assistant speech per row")
    parser.add_argument("--prompt", type=int, default=60, help="untrained prompt tokens per row (5 Hz)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="bench-results/srh_loss.json")
    args = parser.parse_args()

    model = build(5)
    batch = assistant_batch(model.config, args.seconds, args.batch, prefix_tokens=args.prompt)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)  # lr 0: both variants see the same weights

    def step(full: bool) -> tuple[float, float]:
        start = time.perf_counter()
        out = model(**{k: v.clone() for k, v in batch.items()}, return_speech_logits=full or None)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        return time.perf_counter() - start, out.speech_loss.item()

    variants = {"selected": False, "full": True}
    times: dict[str, list[float]] = {name: [] for name in variants}
    losses: dict[str, float] = {}
    for full in variants.values():  # warm-up
        step(full)
    for i in range(args.repeats):
        order = list(variants.items()) if i % 2 == 0 else list(variants.items())[::-1]
        for name, full in order:
            seconds, losses[name] = step(full)
            times[name].append(seconds)
    best = {name: min(t) for name, t in times.items()}
    positions = batch["input_ids"].shape[1] * 5
    targets = int(args.seconds * 25) // 5 * 5 + 5  # speech codes, their audio EOS, and the delay's pads
    ratio = best["full"] / best["selected"]
    print(
        f"SRH speech loss: batch {args.batch}, {positions} SRH positions per row, about {targets} with "
        f"targets; {torch.get_num_threads()} threads"
    )
    print(f"{'speech logits':<16} {'s / step':>9} {'speech loss':>12}")
    for name in variants:
        label = "at targets" if name == "selected" else "everywhere"
        print(f"{label:<16} {best[name]:>9.3f} {losses[name]:>12.5f}")
    print(f"speed-up of logits at targets only: {ratio:.2f}x")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"args": vars(args), "seconds_per_step": best, "speech_loss": losses, "ratio": ratio}, indent=2
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
