"""The 5 Hz claim, reproduced on the demo recipe: the shared LLM at 5 Hz (group size k = 5) against 25 Hz
(k = 1), the same speech stage from the same start, for the same number of samples and for the same
wall clock.

    python tools/experiments/frame_rate.py --run runs/demo [--steps 300] [--tower-steps N] [--limit 20]
        [--out FOLDER]

From a finished demo run (its text LLM, processor, conversations, held-out speech and packaged vocoder):

1. the audio encoder (the recipe's ``audio_encoder`` stage: character CTC at 25 Hz and the LLM-token CTC
   on mean groups of k frames), trained here for each k with the same settings and ``--tower-steps``
   steps (default: the run's);
2. the speech stage: stage 1 of Core-Cocktail (the whole model but the tower fine-tuned on the spoken
   conversations, the recipe's learning rate), from the text LLM and each k's tower, three times, each
   in its own process:

   - ``k5``: group size 5, ``--steps`` steps;
   - ``k1_samples``: group size 1, the same steps (the same conversations in the same batches);
   - ``k1_budget``: group size 1 for as many steps as ``k5``'s training time buys at 25 Hz.

Training time is measured apart, because wall clocks on a shared machine are not comparable across runs
made minutes apart: one process trains both models on the same batches, a step of one and then a step of
the other (``TIMED_STEPS`` each), and the median of the paired ratios is the 25 Hz / 5 Hz cost of a
step; ``k1_budget`` trains ``--steps`` / that ratio steps. Each run also reports its seconds, steps, peak
memory (the process's maximum resident set), the teacher-forced text and speech loss on held-out
conversations (held-out voices and phrasings) and, with the run's vocoder, the held-out S2T and S2S
accuracy of ``demo_eval.evaluate`` (``--limit`` pairs per question-answering task). The paper claims about
50 % less training time at equal quality for 5 Hz; here the paired ratio is the time claim on this
machine, ``k1_samples`` against ``k5`` the quality at equal samples and ``k1_budget`` against ``k5`` the
quality at equal time. ``--out`` gets ``frame_rate.json`` and ``frame_rate.md``; a finished part is not
repeated.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

RUNS = {"k5": (5, False), "k1_samples": (1, False), "k1_budget": (1, True)}
TOWER_HZ = 50  # the audio encoder's transformer runs on 100 Hz mel frames after a stride-2 convolution
TIMED_STEPS = 12  # paired training steps per group size in the timing (after 2 untimed warm-up steps each)
HELDOUT_ROWS = 120  # held-out conversations in the teacher-forced losses


def stage_settings(run: Path) -> dict:
    """The demo settings the run was made with (from its ``core_cocktail`` stage record, else defaults)."""
    from funaudiochat.training.demo.context import DemoSettings

    record = run / "core_cocktail" / "stage.json"
    settings = json.loads(record.read_text()).get("settings", {}) if record.is_file() else {}
    known = DemoSettings.__dataclass_fields__
    return {**{k: f.default for k, f in known.items()}, **{k: v for k, v in settings.items() if k in known}}


def tower_steps_of(run: Path) -> int | None:
    record = run / "audio_encoder" / "stage.json"
    if not record.is_file():
        return None
    return json.loads(record.read_text()).get("steps")


def train_tower(run: Path, out: Path, group_size: int, steps: int) -> dict:
    """The recipe's ``audio_encoder`` stage at ``group_size``; returns its weights, seconds and steps."""
    from funaudiochat.training.demo.context import fit_recipe
    from funaudiochat.training.demo.model_stages import audio_encoder_shape
    from funaudiochat.training.demo.speech_stages import write_utterances

    weights = out / "audio_encoder.safetensors"
    record = out / "tower.json"
    if record.is_file():
        return json.loads(record.read_text())
    out.mkdir(parents=True, exist_ok=True)
    write_utterances(run / "speech", out / "utterances.jsonl")
    text_lm = run / "text_lm" / "model"
    overrides = [
        f"data.train={out / 'utterances.jsonl'}",
        f"trainer.max_steps={steps}",
        f"model.export_path={weights}",
        f"model.text_lm={text_lm}",
        f"model.group_size={group_size}",
        "data.speed_perturb=[0.9,1.0,1.1]",
        "seed=0",
        *(f"model.encoder.{key}={value}" for key, value in audio_encoder_shape(text_lm).items()),
    ]
    start = time.perf_counter()
    fit_recipe("audio_encoder", out / "run", overrides)
    result = {"weights": str(weights), "seconds": time.perf_counter() - start, "steps": steps}
    record.write_text(json.dumps(result, indent=2) + "\n")
    return result


def train_speech(run: Path, out: Path, tower: Path, group_size: int, steps: int) -> dict:
    """Core-Cocktail stage 1 at ``group_size`` in this process; returns seconds, steps and peak memory."""
    import torch
    from funaudiochat.training.demo.context import fit_recipe

    torch.set_num_threads(1)
    settings = stage_settings(run)
    spec = speech_spec(run, tower, group_size)
    overrides = [
        f"data.train={run / 'conversations' / 'train.jsonl'}",
        f"data.processor={run / 'text_tokenizer'}",
        f"data.group_size={group_size}",
        f"trainer.max_steps={steps}",
        f"model.lr={settings['cocktail_lr']}",
        "model.warmup_steps=50",
        "model.freeze=[continuous_audio_tower]",
        "trainer.callbacks=[]",  # no mid-run checkpoints: a timed run is repeated whole, not resumed
        "trainer.log_every_n_steps=1",  # the steps done are read from the log
        "seed=0",
    ]
    start = time.perf_counter()
    fit_recipe("pre_alignment", out, overrides, {"model": {"model": spec}})
    took = time.perf_counter() - start
    steps_done = 0
    for metrics in sorted(out.rglob("metrics.csv")):
        rows = [row.split(",") for row in metrics.read_text().splitlines()[1:] if row]
        steps_done = max([steps_done, *(int(row[1]) + 1 for row in rows)])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"group_size": group_size, "seconds": took, "steps_logged_to": steps_done, "peak_rss_mb": peak_mb}


def speech_spec(run: Path, tower: Path, group_size: int) -> dict:
    """The speech stage's model spec at ``group_size``: the run's demo model (its speech-token table scale
    as its pre-alignment recorded it, the config's when it recorded none), from the text LLM and
    ``tower``."""
    from funaudiochat.training.demo.model_stages import demo_model_spec

    record = run / "pre_alignment" / "stage.json"
    settings = json.loads(record.read_text()).get("settings", {}) if record.is_file() else {}
    spec = demo_model_spec(
        run / "text_lm" / "model",
        run / "text_tokenizer",
        seed=0,
        audio_encoder=tower,
        speech_embedding_std=settings.get("speech_embedding_std"),
    )
    spec["config"]["group_size"] = group_size
    return spec


def forward_gflops_per_speech_second(model, group_size: int) -> dict:
    """Forward GFLOPs per second of speech of each part of ``model`` (2 x parameters x tokens per second;
    attention's length-dependent term left out): the LLM (without its input embeddings) at 25 / k Hz, the
    SRH's pre-matching at 25 / k Hz and the rest of it at 25 Hz, the audio encoder at ``TOWER_HZ``."""

    def count(module, skip=()):
        skipped = {id(p) for m in skip for p in m.parameters()}
        return sum(p.numel() for p in module.parameters() if id(p) not in skipped)

    llm = model.language_model
    srh = model.audio_invert_tower
    slot_hz = 25 / group_size
    parts = {
        "llm": count(llm, [llm.get_input_embeddings()]) * slot_hz,
        "srh": count(srh, [srh.pre_matching]) * 25 + count(srh.pre_matching) * slot_hz,
        "audio_encoder": count(model.continuous_audio_tower) * TOWER_HZ,
    }
    parts = {name: 2 * value / 1e9 for name, value in parts.items()}
    parts["total"] = sum(parts.values())
    return parts


def flops_on_paper(run: Path, towers: dict) -> dict:
    """``forward_gflops_per_speech_second`` at k = 5 and k = 1 for the demo model and the official 8B
    (built on the meta device: shapes only)."""
    import torch
    from funaudiochat.drsr import FunAudioChatConfig, FunAudioChatForConditionalGeneration
    from funaudiochat.training.llm.module import build_model

    table = {}
    for k in (5, 1):
        demo = build_model(speech_spec(run, Path(towers[k]["weights"]), k))
        config = FunAudioChatConfig(audio_config={"group_size": k})
        with torch.device("meta"):
            official = FunAudioChatForConditionalGeneration(config)
        table[f"k{k}"] = {
            "demo": forward_gflops_per_speech_second(demo, k),
            "official_8b": forward_gflops_per_speech_second(official, k),
        }
    return table


def paired_timing(run: Path, towers: dict, steps: int = TIMED_STEPS) -> dict:
    """Seconds per training step (forward, backward, AdamW) of the speech stage at k = 5 and k = 1, the two
    interleaved on the same batches in this process; ``ratio``: the median of the per-batch k1 / k5.
    ``towers``: ``{"5": {"weights": ...}, "1": {...}}``."""
    import inspect
    import statistics

    import torch
    from funaudiochat.training.llm.data import SpokenChatDataModule
    from funaudiochat.training.llm.module import build_model

    torch.set_num_threads(1)
    arms = {}
    for k in (5, 1):
        model = build_model(speech_spec(run, Path(towers[str(k)]["weights"]), k)).train()
        for name, param in model.named_parameters():
            param.requires_grad = not name.startswith("continuous_audio_tower.")
        data = SpokenChatDataModule(
            train=str(run / "conversations" / "train.jsonl"),
            processor=str(run / "text_tokenizer"),
            group_size=k,
        )
        data.setup()
        loader = iter(data.train_dataloader())
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        accepted = set(inspect.signature(model.forward).parameters)
        arms[k] = (model, loader, optimizer, accepted)
    seconds = {5: [], 1: []}
    rows = {5: [], 1: []}
    for index in range(steps + 2):
        for k, (model, loader, optimizer, accepted) in arms.items():
            batch = next(loader)
            start = time.perf_counter()
            out = model(**{name: value for name, value in batch.items() if name in accepted})
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            if index >= 2:
                seconds[k].append(time.perf_counter() - start)
                rows[k].append(int(batch["input_ids"].shape[0]))
    if rows[5] != rows[1]:
        raise RuntimeError(f"the two arms did not see the same batches (rows {rows[5]} vs {rows[1]})")
    ratios = [b / a for a, b in zip(seconds[5], seconds[1], strict=True)]
    return {
        "steps": steps,
        "k5_seconds_per_step": statistics.median(seconds[5]),
        "k1_seconds_per_step": statistics.median(seconds[1]),
        "ratio": statistics.median(ratios),
    }


def heldout_losses(run: Path, model, group_size: int) -> dict:
    """Mean teacher-forced losses of ``model`` on ``HELDOUT_ROWS`` held-out conversations spread evenly
    over the file (one per forward): the text loss of the text-only replies (S2T, transcripts, tool calls:
    the same targets at any group size; a spoken reply's text stream is padded with ``<|sil|>`` to its
    slot count, five times as many easy targets at k = 1) and the speech loss of the spoken ones."""
    import inspect

    import torch
    from funaudiochat.training.llm.data import SpokenChatDataModule

    lines = (run / "conversations" / "heldout.jsonl").read_text().splitlines()
    rows = lines[:: max(1, len(lines) // HELDOUT_ROWS)][:HELDOUT_ROWS]
    subset = run / "conversations" / f".frame_rate_heldout_spread_{HELDOUT_ROWS}.jsonl"
    if not subset.is_file():
        subset.write_text("\n".join(rows) + "\n")
    data = SpokenChatDataModule(
        train=str(subset), processor=str(run / "text_tokenizer"), group_size=group_size, max_batch_size=1
    )
    data.setup()
    accepted = set(inspect.signature(model.forward).parameters)
    text, speech = [], []
    with torch.no_grad():
        for index in range(len(data.train_set)):
            batch = data.collate([data.train_set[index]])
            out = model(**{k: v for k, v in batch.items() if k in accepted})
            if out.speech_loss is None:
                text.append(float(out.text_loss))
            else:
                speech.append(float(out.speech_loss))
    return {
        "heldout_text_reply_loss": sum(text) / len(text) if text else None,
        "heldout_speech_loss": sum(speech) / len(speech) if speech else None,
    }


def evaluate_one(run: Path, model_folder: Path, group_size: int, limit: int) -> dict:
    """Held-out losses and S2T / S2S accuracy of a trained model with the run's packaged vocoder."""
    from funaudiochat.chat import Pipeline
    from funaudiochat.chat.demo_eval import evaluate, heldout_items
    from funaudiochat.chat.loaders import load_parts
    from funaudiochat.drsr import FunAudioChatForConditionalGeneration
    from funaudiochat.drsr.processing import FunAudioChatProcessor
    from funaudiochat.training.demo.listen import Recognizer
    from funaudiochat.training.demo.text_stages import QA_TASKS

    parts = load_parts(run / "package")
    parts.model = FunAudioChatForConditionalGeneration.from_pretrained(str(model_folder)).eval()
    parts.processor = FunAudioChatProcessor.from_pretrained(run / "package", group_size=group_size)
    record = heldout_losses(run, parts.model, group_size)
    pipe = Pipeline(**vars(parts))
    items = [i for i in heldout_items(run, limit) if i.task in QA_TASKS]
    corpus = [json.loads(line) for line in (run / "corpus" / "corpus.jsonl").read_text().splitlines()]
    recognizer = Recognizer([r["answer"] for r in corpus if r["task"] in QA_TASKS])
    results = evaluate(pipe, items, tools=[], recognizer=recognizer, timing_items=0)
    record.update({name: results[name]["accuracy"] for name in ("s2t", "s2s", "s2s_text")})
    return record


def run_child(args: argparse.Namespace) -> int:
    job = json.loads(args.one)
    out = Path(job["out"])
    if job.get("timing"):
        record = paired_timing(args.run, job["towers"])
        (out / "timing.json").write_text(json.dumps(record, indent=2) + "\n")
        return 0
    if job.get("losses_only"):  # a result from before the losses changed: only they are computed again
        from funaudiochat.drsr import FunAudioChatForConditionalGeneration

        record = json.loads((out / "result.json").read_text())
        model = FunAudioChatForConditionalGeneration.from_pretrained(str(out / "model")).eval()
        record.pop("heldout_text_loss", None)
        record.update(heldout_losses(args.run, model, job["group_size"]))
        (out / "result.json").write_text(json.dumps(record, indent=2) + "\n")
        return 0
    record = train_speech(args.run, out, Path(job["tower"]), job["group_size"], job["steps"])
    record.update(evaluate_one(args.run, out / "model", job["group_size"], args.limit))
    (out / "result.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


def table(results: dict, towers: dict, timing: dict, flops: dict) -> str:
    lines = [
        "| run | group size | steps | train s | peak RSS MB | held-out text-reply loss "
        "| held-out speech loss | S2T | S2S heard | S2S text |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        speech, text = r["heldout_speech_loss"], r["heldout_text_reply_loss"]
        lines.append(
            f"| {name} | {r['group_size']} | {r['steps_logged_to']} | {r['seconds']:.0f} "
            f"| {r['peak_rss_mb']:.0f} "
            f"| {'-' if text is None else f'{text:.3f}'} | {'-' if speech is None else f'{speech:.3f}'} "
            f"| {100 * r['s2t']:.1f} % | {100 * r['s2s']:.1f} % | {100 * r['s2s_text']:.1f} % |"
        )
    memory = results["k1_samples"]["peak_rss_mb"] / results["k5"]["peak_rss_mb"]
    paper = [
        "",
        "Forward GFLOPs per second of speech (2 x parameters x tokens per second):",
        "",
        "| model | k | LLM | SRH | audio encoder | total | 25 Hz / 5 Hz |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for model in ("demo", "official_8b"):
        for k in (5, 1):
            f = flops[f"k{k}"][model]
            ratio = f["total"] / flops["k5"][model]["total"]
            paper.append(
                f"| {model} | {k} | {f['llm']:.2f} | {f['srh']:.2f} | {f['audio_encoder']:.2f} "
                f"| {f['total']:.2f} | {ratio:.2f} |"
            )
    tower_line = ", ".join(f"k={k}: {t['steps']} steps, {t['seconds']:.0f} s" for k, t in towers.items())
    return (
        "\n".join(lines)
        + f"\n\n25 Hz / 5 Hz for the same samples: training time {timing['ratio']:.2f}x (paired steps: "
        + f"{timing['k1_seconds_per_step']:.2f} s against {timing['k5_seconds_per_step']:.2f} s, median of "
        + f"{timing['steps']}), peak memory {memory:.2f}x."
        + f"\nAudio encoders (trained once per group size): {tower_line}.\n"
        + "\n".join(paper)
        + "\n"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"), help="a finished demo run folder")
    parser.add_argument("--steps", type=int, default=300, help="speech-stage steps of k5 and k1_samples")
    parser.add_argument("--tower-steps", type=int, help="audio-encoder steps (default: the run's)")
    parser.add_argument("--limit", type=int, default=20, help="held-out pairs per task in the evaluation")
    parser.add_argument("--out", type=Path, default=Path("runs/frame_rate"), help="folder of the runs")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one speech run, in a child process
    args = parser.parse_args(argv)
    args.run = args.run.resolve()
    if args.one:
        return run_child(args)
    for needed in ("text_lm", "text_tokenizer", "conversations", "speech", "corpus", "package"):
        if not (args.run / needed).exists():
            parser.error(f"--run {args.run}: no {needed}/ (run tools/train_demo.py --out {args.run} first)")
    out = args.out.resolve()
    tower_steps = args.tower_steps or tower_steps_of(args.run)
    if tower_steps is None:
        parser.error(f"--run {args.run} has no finished audio_encoder stage; give --tower-steps")
    towers = {}
    for k in (5, 1):
        towers[k] = train_tower(args.run, out / f"tower_k{k}", k, tower_steps)
        print(f"tower k={k}: {towers[k]}", flush=True)
    command = [sys.executable, __file__, "--run", str(args.run), "--limit", str(args.limit)]
    if not (out / "timing.json").is_file():
        job = {"out": str(out), "timing": True, "towers": {str(k): t for k, t in towers.items()}}
        subprocess.run([*command, "--one", json.dumps(job)], check=True)
    timing = json.loads((out / "timing.json").read_text())
    print(f"paired timing: {timing}", flush=True)
    results = {}
    for name, (group_size, budget) in RUNS.items():
        folder = out / name
        steps = max(1, round(args.steps / timing["ratio"])) if budget else args.steps
        if budget and abs(steps - args.steps) <= 0.02 * args.steps:
            # 25 Hz costs what 5 Hz does (within 2 %): the equal-samples run is the equal-time run
            results[name] = {**results["k1_samples"], "same_as": "k1_samples"}
            print(name, results[name], flush=True)
            continue
        job = {"out": str(folder), "tower": towers[group_size]["weights"], "group_size": group_size}
        if not (folder / "result.json").is_file():
            subprocess.run([*command, "--one", json.dumps({**job, "steps": steps})], check=True)
        if "heldout_text_reply_loss" not in json.loads((folder / "result.json").read_text()):
            subprocess.run([*command, "--one", json.dumps({**job, "losses_only": True})], check=True)
        results[name] = json.loads((folder / "result.json").read_text())
        print(name, results[name], flush=True)
    flops = flops_on_paper(args.run, towers)
    text = table(results, towers, timing, flops)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"run": str(args.run), "steps": args.steps, "limit": args.limit, "towers": towers}
    summary.update(timing=timing, flops_per_speech_second=flops, **results)
    (out / "frame_rate.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "frame_rate.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
