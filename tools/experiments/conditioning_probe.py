"""Does the Speech Refined Head's conditioning say which text token its slot holds? A linear probe.

    python tools/experiments/conditioning_probe.py --model runs/demo/package \
        --conversations runs/demo/conversations/train.jsonl [--train-rows 300] [--test-rows 100] \
        [--steps 300] [--seed 0] [--out probe.json]

The SRH reads ``c = h + E_text`` at each 5 Hz slot of a spoken reply: the LLM's last hidden state plus the
embedding of the slot's text token (the answer's tokens, then ``<|sil|>``). To say a word it must know
which word it is at. This collects ``c``, ``h`` and ``E_text`` at every assistant slot of teacher-forced
forwards of a seeded draw of spoken replies, trains a linear softmax classifier (standardised features,
Adam) on the first ``--train-rows`` replies to predict the slot's text token from each, and reports its
accuracy on the other ``--test-rows`` replies: over every slot and over the answer's own tokens (not
``<|sil|>``). ``E_text`` alone is the ceiling; ``c`` below it means the LLM state drowns the token.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import random
from pathlib import Path

FEATURES = ("text_embedding", "llm_state", "conditioning")


def _probe_module():
    spec = importlib.util.spec_from_file_location("srh_probe", Path(__file__).with_name("srh_probe.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def slot_features(model, batch: dict) -> tuple[dict, object]:
    """The three features ``[n, D]`` at the assistant's slots of a one-conversation ``batch`` and the slot
    tokens ``[n]`` (the reply's text ids, then ``<|sil|>``, as the model lays them out)."""
    import torch

    seen = {}
    merge = model.merge_inputs

    def keep(*args, **kwargs):
        merged = merge(*args, **kwargs)
        seen["text_embeds"] = merged.text_embeds.detach()
        return merged

    handle = model.audio_invert_tower.register_forward_pre_hook(
        lambda module, args: seen.update(conditioning=args[0].detach())
    )
    model.merge_inputs = keep
    accepted = set(inspect.signature(model.forward).parameters)
    try:
        with torch.no_grad():
            model(**{k: v for k, v in batch.items() if k in accepted}, return_speech_logits=True)
    finally:
        handle.remove()
        del model.merge_inputs
    text = model.config.text_config
    slots = (batch["input_ids"][0] == model.config.audio_token_index).nonzero()[:, 0]
    breaks = (slots[1:] - slots[:-1] != 1).nonzero()[:, 0]
    reply = slots[int(breaks[-1]) + 1 :] if len(breaks) else slots  # the last run of slots: the reply
    ids = batch["text_ids"][-1]
    ids = ids[ids != text.pad_token_id]
    tokens = torch.cat([ids, torch.full((len(reply),), text.sil_index)])[: len(reply)]
    conditioning, text_embedding = seen["conditioning"][0, reply], seen["text_embeds"][0, reply]
    features = {
        "text_embedding": text_embedding,
        "llm_state": conditioning - text_embedding,
        "conditioning": conditioning,
    }
    return features, tokens


def probe_accuracy(train_x, train_y, test_x, test_y, sil: int, steps: int, seed: int) -> dict:
    """Held-out accuracy of a linear softmax classifier trained on ``train_x [n, D] -> train_y [n]``."""
    import torch

    torch.manual_seed(seed)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    classes = int(max(train_y.max(), test_y.max())) + 1
    layer = torch.nn.Linear(train_x.shape[1], classes)
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(layer(train_x), train_y).backward()
        optimizer.step()
    with torch.no_grad():
        right = layer(test_x).argmax(-1) == test_y
    words = test_y != sil
    return {"all_slots": float(right.float().mean()), "answer_tokens": float(right[words].float().mean())}


def run(args) -> dict:
    import torch
    from funaudiochat.drsr import FunAudioChatForConditionalGeneration

    probe = _probe_module()
    lines = probe.spoken_lines(args.conversations, 10**9)
    random.Random(args.seed).shuffle(lines)
    lines = lines[: args.train_rows + args.test_rows]
    if len(lines) < 2:
        raise SystemExit(f"{args.conversations}: need at least 2 spoken replies, found {len(lines)}")
    subset = args.conversations.with_name(f".conditioning_probe_{args.seed}.jsonl")
    subset.write_text("\n".join(lines) + "\n", encoding="utf-8")
    from funaudiochat.training.llm.data import SpokenChatDataModule

    data = SpokenChatDataModule(
        train=str(subset), processor=str(args.processor or args.model), max_batch_size=1
    )
    data.setup()
    model = FunAudioChatForConditionalGeneration.from_pretrained(str(args.model)).eval()
    train_rows = min(args.train_rows, len(lines) - 1)
    parts = {"train": ({f: [] for f in FEATURES}, []), "test": ({f: [] for f in FEATURES}, [])}
    for index in range(len(data.train_set)):
        features, tokens = slot_features(model, data.collate([data.train_set[index]]))
        xs, ys = parts["train" if index < train_rows else "test"]
        for name in FEATURES:
            xs[name].append(features[name])
        ys.append(tokens)
    (train_xs, train_ys), (test_xs, test_ys) = parts["train"], parts["test"]
    train_y, test_y = torch.cat(train_ys), torch.cat(test_ys)
    sil = model.config.text_config.sil_index
    result = {
        "train_rows": train_rows,
        "test_rows": len(lines) - train_rows,
        "test_slots": len(test_y),
        "test_answer_tokens": int((test_y != sil).sum()),
    }
    for name in FEATURES:
        result[name] = probe_accuracy(
            torch.cat(train_xs[name]), train_y, torch.cat(test_xs[name]), test_y, sil, args.steps, args.seed
        )
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    probe = _probe_module()
    probe.add_reply_arguments(parser)
    parser.add_argument("--train-rows", type=int, default=300, help="spoken replies the probe learns from")
    parser.add_argument("--test-rows", type=int, default=100, help="spoken replies it is measured on")
    parser.add_argument("--steps", type=int, default=300, help="full-batch Adam steps of the probe")
    parser.add_argument("--seed", type=int, default=0, help="seed of the replies' draw and of the probe")
    parser.add_argument("--out", type=Path, help="write the accuracies as JSON here")
    args = parser.parse_args(argv)
    if args.train_rows < 1 or args.test_rows < 1 or args.steps < 1:
        parser.error("--train-rows, --test-rows and --steps must be at least 1")
    result = probe.single_threaded(run, args)
    for name in FEATURES:
        accuracy = result[name]
        print(
            f"{name:>15}: all slots {accuracy['all_slots']:.3f}, "
            f"answer tokens {accuracy['answer_tokens']:.3f}"
        )
    probe.write_result(args.out, args, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
