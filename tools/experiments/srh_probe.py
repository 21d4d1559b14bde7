"""What the Speech Refined Head has learnt: teacher-forced code accuracy over the answer's time, and how much
it leans on its two inputs.

    python tools/experiments/srh_probe.py --model FOLDER --conversations FILE.jsonl [--processor FOLDER]
        [--rows 40] [--out probe.json]

On spoken replies (official sharegpt JSONL, e.g. a demo run's ``conversations/heldout.jsonl``; rows
without assistant speech are skipped), one conversation per forward:

- accuracy and loss (nats per code) of the SRH's next-code prediction in 0.4 s bins of the reply's speech
  row (the first bin is the 10 BOS delay tokens);
- the loss on the reply's speech content (codes 10-49 of the row: its first 1.6 s after the delay) as it
  is, with every previous-token input replaced by the pad id (does the head read what it just said?) and
  with its conditioning (LLM state + text embedding) taken from another conversation (does it read the
  LLM?). A head that ignores an input loses nothing when it is taken away.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

BIN_CODES = 10  # 0.4 s at 25 Hz
CONTENT = slice(10, 50)  # after the 10 BOS delay tokens, the first 40 codes


def add_reply_arguments(parser) -> None:
    """The arguments every SRH tool here takes: ``--model``, ``--processor``, ``--conversations``."""
    parser.add_argument("--model", type=Path, required=True, help="a model folder, or a pipeline folder")
    parser.add_argument("--processor", type=Path, help="processor folder (default: --model)")
    parser.add_argument("--conversations", type=Path, required=True, help="conversations with spoken replies")


def single_threaded(run, args):
    """``run(args)`` with torch on one thread (timings of these small models are steadier), its thread
    count given back afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads)


def write_result(path: Path | None, args, result: dict) -> None:
    """Write ``result`` with the command's arguments as JSON to ``path`` (nothing when it is None)."""
    if path is not None:
        path.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **result}, indent=2))


def spoken_lines(conversations: Path, rows: int) -> list[str]:
    """The first ``rows`` lines of ``conversations`` whose conversation ends with assistant speech."""
    kept = []
    for line in conversations.read_text(encoding="utf-8").splitlines():
        entries = json.loads(line).get("audio", [])
        if entries and json.loads(entries[-1]).get("token", "").count("[AU"):
            kept.append(line)
        if len(kept) == rows:
            break
    if not kept:
        raise SystemExit(f"{conversations}: no conversation ends with assistant speech")
    return kept


def speech_rows(conversations: Path, processor: Path, rows: int):
    """A data module over the first ``rows`` conversations with assistant speech (written beside
    ``conversations`` as a hidden file)."""
    from funaudiochat.training.llm.data import SpokenChatDataModule

    kept = spoken_lines(conversations, rows)
    subset = conversations.with_name(f".srh_probe_{conversations.stem}_{len(kept)}.jsonl")
    subset.write_text("\n".join(kept) + "\n", encoding="utf-8")
    data = SpokenChatDataModule(train=str(subset), processor=str(processor), max_batch_size=1)
    data.setup()
    return data


def reply_codes(out, ignore_index: int):
    """The SRH's logits ``[N, V]`` (float) and target codes ``[N]`` at the trained positions of a
    one-conversation forward with ``return_speech_logits=True``, in time order."""
    targets = out.speech_targets[0]
    where = (targets != ignore_index).nonzero()[:, 0]
    return out.speech_logits[0, where].float(), targets[where]


def probe(model, data) -> dict:
    """The module docstring's figures for ``model`` on every conversation of ``data``."""
    import torch
    import torch.nn.functional as F

    accepted = set(inspect.signature(model.forward).parameters)
    pad = model.config.audio_config.pad_token_id
    swap = {"mode": "intact", "other": None, "seen": None}

    def pre_hook(module, args, kwargs):
        conditioning, prev = args[0], args[1]
        swap["seen"] = conditioning.detach()
        if swap["mode"] == "no_previous_tokens" and prev is not None:
            prev = torch.full_like(prev, pad)
        if swap["mode"] == "other_conditioning" and swap["other"] is not None:
            other = swap["other"]
            n = min(other.shape[1], conditioning.shape[1])
            conditioning = conditioning.clone()
            conditioning[:, -n:] = other[:, -n:]  # the replies sit at the end of both
        return (conditioning, prev, *args[2:]), kwargs

    handle = model.audio_invert_tower.register_forward_pre_hook(pre_hook, with_kwargs=True)
    bins: dict[int, list[tuple[float, float]]] = {}
    content: dict[str, list[float]] = {"intact": [], "no_previous_tokens": [], "other_conditioning": []}
    previous = None
    try:
        for index in range(len(data.train_set)):
            batch = data.collate([data.train_set[index]])
            inputs = {k: v for k, v in batch.items() if k in accepted}
            for mode in content:
                if mode == "other_conditioning" and previous is None:
                    continue
                swap.update(mode=mode, other=previous)
                with torch.no_grad():
                    out = model(**inputs, return_speech_logits=True)
                if mode == "intact":
                    mine = swap["seen"]
                logits, codes = reply_codes(out, model.config.ignore_index)
                nll = F.cross_entropy(logits, codes, reduction="none")
                if len(nll) > CONTENT.start:
                    content[mode].append(float(nll[CONTENT].mean()))
                if mode == "intact":
                    hits = logits.argmax(-1) == codes
                    for position in range(len(codes)):
                        bins.setdefault(position // BIN_CODES, []).append(
                            (float(hits[position]), float(nll[position]))
                        )
            previous = mine
    finally:
        handle.remove()
    return {
        "rows": len(data.train_set),
        "bins": [
            {
                "seconds": round(b * BIN_CODES / 25, 2),
                "accuracy": sum(h for h, _ in v) / len(v),
                "loss": sum(n for _, n in v) / len(v),
                "codes": len(v),
            }
            for b, v in sorted(bins.items())
        ],
        "content_loss": {mode: sum(v) / len(v) for mode, v in content.items() if v},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a checkpoint folder (official layout)")
    parser.add_argument(
        "--conversations", type=Path, required=True, help="sharegpt JSONL with spoken replies"
    )
    parser.add_argument("--processor", type=Path, help="processor folder (default: --model)")
    parser.add_argument("--rows", type=int, default=40, help="conversations with assistant speech to use")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    import torch
    from funaudiochat.drsr import FunAudioChatForConditionalGeneration

    data = speech_rows(args.conversations, args.processor or args.model, args.rows)
    model = FunAudioChatForConditionalGeneration.from_pretrained(str(args.model)).eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one conversation per forward: more threads only contend
    try:
        result = probe(model, data)
    finally:
        torch.set_num_threads(threads)
    for row in result["bins"]:
        figures = f"accuracy {row['accuracy']:.2f}, loss {row['loss']:.2f} ({row['codes']} codes)"
        print(f"{row['seconds']:4.1f} s: {figures}")
    for mode, value in result["content_loss"].items():
        print(f"content loss, {mode.replace('_', ' ')}: {value:.3f}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
