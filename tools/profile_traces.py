"""Chrome traces of a training step and of a generation, with named ranges for each part of the model.

The model code marks its parts with ``torch.profiler.record_function``: ``encoder`` (continuous audio
tower), ``grouping`` (speech grouping 25 -> 5 Hz), ``llm`` (shared LLM), ``srh`` (SRH, training) and
``srh_substep`` (each of the k SRH sub-steps of a generation step), ``sampling`` (token choice). This
tool profiles one training step (forward + backward + optimizer) and one short generation of a random
model, writes ``train_trace.json`` and ``generate_trace.json`` (open them in chrome://tracing or
https://ui.perfetto.dev), and prints the time spent in each range.

    python tools/profile_traces.py [--out bench-results/profile] [--steps 12]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch
from funaudiochat.drsr import DecodingConfig, generate
from torch.profiler import ProfilerActivity, profile

RANGES = ("encoder", "grouping", "llm", "srh", "srh_substep", "sampling")
HERE = Path(__file__).resolve().parent


def _load(name: str):
    if str(HERE / "bench") not in sys.path:  # the benchmarks import each other by file name
        sys.path.insert(0, str(HERE / "bench"))
    spec = importlib.util.spec_from_file_location(name, HERE / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def summarize(prof, title: str) -> None:
    totals = {name: 0.0 for name in RANGES}
    counts = dict.fromkeys(RANGES, 0)
    for event in prof.key_averages():
        if event.key in totals:
            totals[event.key] += event.cpu_time_total / 1e3
            counts[event.key] += event.count
    print(title)
    for name in RANGES:
        if counts[name]:
            print(f"  {name:<12} {totals[name]:>10.1f} ms  ({counts[name]} calls)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-results/profile")
    parser.add_argument("--steps", type=int, default=12, help="LLM steps of the profiled generation")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])

    gen_bench = _load("generate")
    model = gen_bench.build()
    # Training step on a batch with user audio (encoder) and assistant speech (grouping, LLM, SRH).
    train_bench = _load("drsr_training")
    batch = train_bench.assistant_batch(model.config, seconds=6.0, batch=2)
    user = gen_bench.prompts(model.config, batch=2, seconds=2.0)
    k = model.config.audio_config.group_size
    user_slots = user["speech_ids"].shape[1] // k
    tc = model.config.text_config
    user_turn = torch.tensor(
        [tc.audio_bos_index] + [model.config.audio_token_index] * user_slots + [tc.audio_eos_index]
    ).expand(2, -1)
    batch["input_ids"] = torch.cat([user_turn, batch["input_ids"]], dim=1)
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    batch["labels"] = torch.cat([torch.full_like(user_turn, -100), batch["labels"]], dim=1)
    width = max(user["speech_ids"].shape[1], batch["speech_ids"].shape[1])

    def pad(x, value):
        return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)

    # audio rows in order of appearance: user 0, assistant 0, user 1, assistant 1
    batch["speech_ids"] = torch.stack(
        [
            pad(user["speech_ids"], 6563)[0],
            pad(batch["speech_ids"], 6563)[0],
            pad(user["speech_ids"], 6563)[1],
            pad(batch["speech_ids"], 6563)[1],
        ]
    )
    batch["speech_attention_mask"] = torch.stack(
        [
            pad(user["speech_attention_mask"], 0)[0],
            pad(batch["speech_attention_mask"], 0)[0],
            pad(user["speech_attention_mask"], 0)[1],
            pad(batch["speech_attention_mask"], 0)[1],
        ]
    )
    batch["text_ids"] = torch.stack(
        [batch["text_ids"][0], batch["text_ids"][0], batch["text_ids"][1], batch["text_ids"][1]]
    )
    batch["text_attention_mask"] = torch.tensor([False, True, False, True])
    batch["feature_exist_mask"] = torch.tensor([True, False, True, False])
    batch["input_features"] = user["input_features"]
    batch["feature_attention_mask"] = user["feature_attention_mask"]

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step():
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    train_step()
    with profile(activities=activities, record_shapes=True) as prof:
        train_step()
    prof.export_chrome_trace(str(out / "train_trace.json"))
    summarize(prof, "training step")

    model.eval()
    inputs = gen_bench.prompts(model.config, batch=1)
    config = DecodingConfig(max_new_tokens=args.steps)
    generate(model, inputs, DecodingConfig(max_new_tokens=2))
    with profile(activities=activities) as prof:
        generate(model, inputs, config)
    prof.export_chrome_trace(str(out / "generate_trace.json"))
    summarize(prof, f"generation ({args.steps} steps)")
    print(f"wrote {out / 'train_trace.json'} and {out / 'generate_trace.json'}")


if __name__ == "__main__":
    main()
