"""The 5 Hz claim, reproduced on the demo recipe: the whole recipe with the shared LLM at 5 Hz (group size
k = 5) against 25 Hz (k = 1), for the same number of samples and for the same wall clock.

    python tools/experiments/frame_rate.py --run runs/demo [--out runs/frame_rate] [--limit 50] [--jobs 2]
        [--samples-only]

``--run`` is a finished demo build at k = 5 (``tools/train_demo.py``): the ``k5`` arm. The other arms are
builds of the same recipe with the same settings but ``group_size=1``, restored from it
(``train_demo.py --restore-products``): the stages the grouping does not touch (the text tokenizer and LLMs,
the speech, the speech tokenizer, the vocoder) keep the 5 Hz run's products, and those it does
(``GROUPED_STAGES``: the conversations' word-aligned reply text, both towers, pre-alignment, Core-Cocktail,
DPO with the speech polish, the package) are built again:

- ``k1_samples``: the same steps, so the same samples;
- ``k1_budget``: the speech LLM stages' steps (``BUDGET_STEPS``) times the 5 Hz / 25 Hz cost of a step, so
  that they train as long as at 5 Hz (the towers cost the same at both rates and keep their steps: this arm
  is restored from ``k1_samples``, whose conversations and towers are its own). When a 25 Hz step costs
  within ``SAME_COST`` of a 5 Hz one, ``k1_budget`` is ``k1_samples``.

The cost of a step is measured apart, because wall clocks on a shared machine do not compare across runs
made hours apart: one process trains both models (Core-Cocktail's, from the two arms' towers) on the same
batches, a step of one and then a step of the other (``TIMED_STEPS`` each, one thread), and the median of the
paired ratios is the 25 Hz / 5 Hz cost of a step. Each arm reports the seconds of its grouped stages and of
the whole recipe (``stage.json``; restored stages count the seconds they took in the 5 Hz run), the peak
resident memory of its grouped stages' processes and ``tools/eval_spoken_qa.py``'s figures (S2T, S2S heard,
ASR word error rate, tool calls, text knowledge, real-time factor) on ``--limit`` held-out pairs per task.
The paper's forward FLOPs per second of speech are computed for the demo model and the official 8B.
``--out`` gets ``frame_rate.json`` and ``frame_rate.md``; each arm's build and evaluation resume where they
stopped. ``--samples-only`` reports before the equal-time arm is built (its row says so), the run after
builds it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# stages that read the group size, directly or through their inputs (``products.ADDED_SETTINGS``)
GROUPED_STAGES = (
    "conversations",
    "audio_encoder",
    "tower_match",
    "pre_alignment",
    "core_cocktail",
    "dpo",
    "package",
)
# the speech LLM stages' step counts, scaled in the equal-time arm
BUDGET_STEPS = (
    "listening_steps",
    "pre_alignment_steps",
    "cocktail_stage1_steps",
    "cocktail_stage2_steps",
    "dpo_steps",
    "speech_polish_steps",
)
SAME_COST = 0.1  # a 25 Hz step within 10 % of a 5 Hz one: the equal-samples arm is the equal-time arm
TOWER_HZ = 50  # the audio encoder's transformer runs on 100 Hz mel frames after a stride-2 convolution
TIMED_STEPS = 12  # paired training steps per group size in the timing (after 2 untimed warm-up steps each)
TIMED_ROWS = 8  # conversations per timed step
EVAL_FIELDS = ("s2t", "s2s", "s2s_text", "tools", "text_final")


def run_settings(run: Path):
    """The ``DemoSettings`` a finished run was built with (its ``package`` stage record)."""
    from funaudiochat.training.demo.context import DemoSettings

    record = run / "package" / "stage.json"
    if not record.is_file():
        raise SystemExit(f"--run {run}: no finished package stage (run tools/train_demo.py --out {run})")
    recorded = json.loads(record.read_text())["settings"]
    known = {f.name for f in dataclasses.fields(DemoSettings)}
    return DemoSettings(**{k: v for k, v in recorded.items() if k in known})


def arm_settings(settings, group_size: int, cost_ratio: float = 1.0):
    """``settings`` at ``group_size``, the ``BUDGET_STEPS`` divided by ``cost_ratio`` (25 Hz / 5 Hz seconds
    per step; 1: the same steps)."""
    steps = {}
    for name in BUDGET_STEPS:
        value = getattr(settings, name)
        steps[name] = max(1, round(value / cost_ratio)) if value else 0
    return dataclasses.replace(settings, group_size=group_size, **steps)


def build_arm(run: Path, folder: Path, settings, jobs: int) -> None:
    """``tools/train_demo.py`` at ``settings`` into ``folder``, restored from ``run`` (a finished build of
    either rate: the products of every stage whose settings agree are copied; resumes)."""
    from funaudiochat.training.demo.build import settings_assignments

    sets = [arg for assignment in settings_assignments(settings) for arg in ("--set", assignment)]
    command = [sys.executable, str(ROOT / "tools" / "train_demo.py"), "--out", str(folder)]
    command += ["--restore-products", str(run), "--jobs", str(jobs), *sets]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)


def evaluate_arm(folder: Path, limit: int) -> dict:
    """``tools/eval_spoken_qa.py`` on the arm's package and held-out speech (kept in
    ``folder/frame_rate_eval.json``: not evaluated again)."""
    out = folder / "frame_rate_eval.json"
    if not out.is_file():
        command = [
            sys.executable,
            str(ROOT / "tools" / "eval_spoken_qa.py"),
            "--model",
            str(folder / "package"),
        ]
        command += ["--run", str(folder), "--limit", str(limit), "--out", str(out)]
        print(" ".join(command), flush=True)
        subprocess.run(command, check=True)
    return json.loads(out.read_text())


def arm_record(folder: Path, settings, results: dict) -> dict:
    """One arm's row: group size, the grouped stages' steps, seconds and peak memory, the whole recipe's
    seconds and the evaluation's figures."""
    from funaudiochat.training.demo.products import recorded_seconds

    records = {path.parent.name: json.loads(path.read_text()) for path in sorted(folder.glob("*/stage.json"))}

    def trained(record: dict) -> float:
        return recorded_seconds(record, record["seconds"])

    grouped = {name: trained(records[name]) for name in GROUPED_STAGES if name in records}
    peaks = [records[name].get("process_peak_rss_mb") for name in GROUPED_STAGES if name in records]
    peaks = [p for p in peaks if p is not None]
    timing = results.get("timing", {})
    return {
        "group_size": settings.group_size,
        "steps": {name: getattr(settings, name) for name in BUDGET_STEPS},
        "grouped_stage_seconds": grouped,
        "grouped_seconds": sum(grouped.values()),
        "recipe_seconds": sum(trained(r) for r in records.values()),
        "peak_rss_mb": max(peaks) if peaks else None,
        **{name: results[name]["accuracy"] for name in EVAL_FIELDS if name in results},
        "asr_wer": results.get("asr_wer"),
        "rtf": timing.get("rtf"),
        "first_audio_s": timing.get("first_audio_s"),
    }


def speech_spec(run: Path, tower: Path, group_size: int) -> dict:
    """Core-Cocktail's model at ``group_size`` (the run's demo model from its text LLM and ``tower``): only
    its shapes matter to the timing and the FLOPs."""
    from funaudiochat.training.demo.model_stages import demo_model_spec

    settings = run_settings(run)
    return demo_model_spec(
        run / "text_lm_copy" / "model",
        run / "text_tokenizer",
        seed=0,
        audio_encoder=tower,
        speech_embedding_std=settings.speech_embedding_std,
        srh_text_scale=settings.srh_text_scale,
        audio_width=settings.audio_encoder_width,
        group_size=group_size,
        srh_width=settings.srh_width,
        srh_layers=settings.srh_layers,
    )


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


def flops_on_paper(run: Path, towers: dict[int, Path]) -> dict:
    """``forward_gflops_per_speech_second`` at k = 5 and k = 1 for the demo model and the official 8B
    (built on the meta device: shapes only)."""
    import torch
    from funaudiochat.drsr import FunAudioChatConfig, FunAudioChatForConditionalGeneration
    from funaudiochat.training.llm.module import build_model

    table = {}
    for k in (5, 1):
        demo = build_model(speech_spec(run, towers[k], k))
        config = FunAudioChatConfig(audio_config={"group_size": k})
        with torch.device("meta"):
            official = FunAudioChatForConditionalGeneration(config)
        table[f"k{k}"] = {
            "demo": forward_gflops_per_speech_second(demo, k),
            "official_8b": forward_gflops_per_speech_second(official, k),
        }
    return table


def paired_timing(
    arms: dict[int, Path], steps: int = TIMED_STEPS, rows: int = TIMED_ROWS, seed: int = 0
) -> dict:
    """Seconds per training step (forward, backward, AdamW; the tower frozen as in Core-Cocktail) of the
    speech model at k = 5 and k = 1, interleaved in this process on one thread, each step on the same
    ``rows`` training conversations for both (a seeded draw; each arm's own file, whose replies are aligned
    at its rate). ``arms``: k -> that arm's run folder. ``ratio``: the median of the per-step k1 / k5."""
    import inspect
    import random
    import statistics

    import torch
    from funaudiochat.training.llm.data import SpokenChatDataModule
    from funaudiochat.training.llm.module import build_model

    torch.set_num_threads(1)
    models = {}
    for k, folder in arms.items():
        tower = folder / "tower_match" / "audio_encoder.safetensors"
        model = build_model(speech_spec(arms[5], tower, k)).train()
        for name, param in model.named_parameters():
            param.requires_grad = not name.startswith("continuous_audio_tower.")
        data = SpokenChatDataModule(
            train=str(folder / "conversations" / "train.jsonl"),
            processor=str(folder / "text_tokenizer"),
            group_size=k,
        )
        data.setup()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        models[k] = (model, data, optimizer, set(inspect.signature(model.forward).parameters))
    sizes = {len(data.train_set) for _, data, _, _ in models.values()}
    if len(sizes) != 1:
        raise RuntimeError(f"the arms' training conversations differ in number: {sorted(sizes)}")
    count = sizes.pop()
    draw = random.Random(seed)
    seconds: dict[int, list[float]] = {5: [], 1: []}
    for index in range(steps + 2):
        chosen = [draw.randrange(count) for _ in range(rows)]
        for k, (model, data, optimizer, accepted) in models.items():
            batch = data.collate([data.train_set[i] for i in chosen])
            start = time.perf_counter()
            out = model(**{name: value for name, value in batch.items() if name in accepted})
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            if index >= 2:
                seconds[k].append(time.perf_counter() - start)
    ratios = [b / a for a, b in zip(seconds[5], seconds[1], strict=True)]
    return {
        "steps": steps,
        "rows": rows,
        "k5_seconds_per_step": statistics.median(seconds[5]),
        "k1_seconds_per_step": statistics.median(seconds[1]),
        "ratio": statistics.median(ratios),
    }


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def table(arms: dict, timing: dict, flops: dict) -> str:
    """The report: a row per arm, the paired timing and the FLOPs on paper."""
    lines = [
        "| arm | group size | speech LLM steps | grouped stages s | whole recipe s | peak RSS MB | S2T "
        "| S2S heard | S2S text | ASR WER | tool calls | text | RTF |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, a in arms.items():
        steps = sum(a["steps"].values())
        if a.get("pending"):
            lines.append(f"| {name} | {a['group_size']} | {steps} | not built yet |" + " |" * 9)
            continue
        peak = "-" if a["peak_rss_mb"] is None else f"{a['peak_rss_mb']:.0f}"
        rtf = "-" if a.get("rtf") is None else f"{a['rtf']:.2f}"
        scores = " | ".join(
            _percent(a.get(field)) for field in ("s2t", "s2s", "s2s_text", "asr_wer", "tools")
        )
        lines.append(
            f"| {name} | {a['group_size']} | {steps} | {a['grouped_seconds']:.0f} "
            f"| {a['recipe_seconds']:.0f} | {peak} | {scores} | {_percent(a.get('text_final'))} | {rtf} |"
        )
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
    clocks = (
        "\n\nThe seconds are each stage's own clock as its build recorded it (restored stages: the 5 Hz "
        "run's). Builds made hours apart on a shared machine ran beside different stages at different thread "
        "counts, so these clocks do not compare across arms; the paired step below does."
    )
    return (
        "\n".join(lines)
        + clocks
        + f"\n\nA speech LLM training step at 25 Hz against 5 Hz, the same batches: {timing['ratio']:.2f}x "
        + f"({timing['k1_seconds_per_step']:.2f} s against {timing['k5_seconds_per_step']:.2f} s, paired "
        + f"median of {timing['steps']}, one thread).\n"
        + "\n".join(paper)
        + "\n"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished demo run at group size 5")
    parser.add_argument("--out", type=Path, default=Path("runs/frame_rate"), help="folder of the 25 Hz arms")
    parser.add_argument("--limit", type=int, default=50, help="held-out pairs per task in the evaluation")
    parser.add_argument("--jobs", type=int, default=2, help="train_demo.py --jobs of the 25 Hz builds")
    parser.add_argument(
        "--samples-only",
        action="store_true",
        help="report without the equal-time arm when it is not built (a row saying so in its place)",
    )
    parser.add_argument("--timing", help=argparse.SUPPRESS)  # internal: the paired timing, in a child process
    args = parser.parse_args(argv)
    run = args.run.resolve()
    out = args.out.resolve()
    if args.timing:  # the child process of the paired timing
        arms = {int(k): Path(folder) for k, folder in json.loads(args.timing).items()}
        (out / "timing.json").write_text(json.dumps(paired_timing(arms), indent=2) + "\n")
        return 0
    settings = run_settings(run)
    if settings.group_size != 5:
        parser.error(f"--run {run} was built at group_size {settings.group_size}; give a 5 Hz run")
    out.mkdir(parents=True, exist_ok=True)
    folders = {"k5": run, "k1_samples": out / "k1_samples"}
    arm_config = {"k5": settings, "k1_samples": arm_settings(settings, 1)}
    build_arm(run, folders["k1_samples"], arm_config["k1_samples"], args.jobs)
    if not (out / "timing.json").is_file():  # in its own process: one thread, nothing else loaded
        arms_arg = json.dumps({"5": str(run), "1": str(folders["k1_samples"])})
        command = [sys.executable, __file__, "--run", str(run), "--out", str(out), "--timing", arms_arg]
        subprocess.run(command, check=True)
    timing = json.loads((out / "timing.json").read_text())
    print(f"paired timing: {timing}", flush=True)
    pending = None
    if abs(timing["ratio"] - 1) > SAME_COST:
        budget = arm_settings(settings, 1, timing["ratio"])
        if args.samples_only and not (out / "k1_budget" / "package" / "stage.json").is_file():
            pending = {"group_size": 1, "steps": {name: getattr(budget, name) for name in BUDGET_STEPS}}
            pending["pending"] = "not built yet: run frame_rate.py without --samples-only"
        else:
            folders["k1_budget"] = out / "k1_budget"
            arm_config["k1_budget"] = budget
            # from the 25 Hz build: its conversations and towers are this arm's too (their steps are kept)
            build_arm(folders["k1_samples"], folders["k1_budget"], budget, args.jobs)
    arms = {}
    for name, folder in folders.items():
        arms[name] = arm_record(folder, arm_config[name], evaluate_arm(folder, args.limit))
        print(name, arms[name], flush=True)
    if pending is not None:
        arms["k1_budget"] = pending
    elif "k1_budget" not in arms:
        arms["k1_budget"] = {**arms["k1_samples"], "same_as": "k1_samples"}
    towers = {
        k: folders[name] / "tower_match" / "audio_encoder.safetensors"
        for k, name in ((5, "k5"), (1, "k1_samples"))
    }
    flops = flops_on_paper(run, towers)
    text = table(arms, timing, flops)
    print(text)
    summary = {"run": str(run), "limit": args.limit, "timing": timing, "flops_per_speech_second": flops}
    summary["arms"] = arms
    (out / "frame_rate.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "frame_rate.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
