"""The vocoder stages of the demo recipe: flow matching and HiFT trained on the assistant's voice.

Both read one manifest of every training answer (``speech/train_a``, spoken in ``ASSISTANT_VOICE``), each
line ``path<TAB>assistant``: one speaker, whose pseudo x-vector (``pseudo_speaker_embedding("assistant",
seed)``) is the one entry of the shipped speaker table. The flow learns the trained speech tokenizer's
codes -> mel; HiFT learns mel -> waveform and needs no codes, so it can run as soon as the speech exists.
Sizes: ``DEMO_FLOW`` (the flow of the "demo" vocoder of ``tools/bench/vocoder.py``) and ``DEMO_HIFT`` (half
that vocoder's HiFT width: a training step of the GAN is the recipe's dearest on a CPU).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .context import StageContext, fit_recipe

ASSISTANT_SPEAKER = "assistant"
DEMO_FLOW = {
    "pre_lookahead_channels": 256,
    "dim": 256,
    "depth": 4,
    "heads": 4,
    "dim_head": 64,
    "conv_pos_groups": 16,
    "static_chunk_size": 50,
    "noise_frames": 15000,
}
DEMO_HIFT = {"base_channels": 64, "f0_cond_channels": 64}
HIFT_SEGMENT_FRAMES = 26  # 0.52 s per training segment (CosyVoice3: 52); half the cost of a step on a CPU


def write_answer_manifest(speech: Path, out: Path) -> int:
    """``out/answers.txt``: every training answer of ``speech/train_a`` as ``path<TAB>assistant`` (paths
    relative to ``out``); returns the number of lines."""
    from funaudiochat.base.atomic import atomic_write_text

    from ..data import read_manifest

    out.mkdir(parents=True, exist_ok=True)
    entries = read_manifest(speech / "train_a" / "manifest.jsonl")
    lines = [f"{os.path.relpath(e.answer_audio, out)}\t{ASSISTANT_SPEAKER}\n" for e in entries]
    atomic_write_text(out / "answers.txt", "".join(lines))
    return len(lines)


def run_vocoder_hift(build: StageContext) -> dict[str, Any]:
    speech, out = build.require("speech", "vocoder_hift"), build.folder("vocoder_hift")
    answers = write_answer_manifest(speech, out)
    weights = out / "hift.safetensors"
    steps = 2 * build.settings.hift_steps  # Lightning counts the generator and discriminator steps both
    overrides = [
        f"data.train={out / 'answers.txt'}",
        f"trainer.max_steps={steps}",
        f"model.export_path={weights}",
        f"seed={build.settings.seed}",
        "data.cache_audio=true",  # one voice's answers: ~0.4 GB at 24 kHz
    ]
    extra = {"data": {"segment_frames": HIFT_SEGMENT_FRAMES}}
    if build.settings.vocoder_size != "tiny":
        extra["model"] = {"hift": DEMO_HIFT}
    fit_recipe(
        "vocoder_hift",
        out / "run",
        overrides,
        extra,
        product=weights,
        precision=build.settings.vocoder_precision,
    )
    return {"answers": answers, "steps": build.settings.hift_steps, "weights": str(weights)}


def run_vocoder_flow(build: StageContext) -> dict[str, Any]:
    speech, out = build.require("speech", "vocoder_flow"), build.folder("vocoder_flow")
    tokenizer = build.require("speech_tokenizer", "vocoder_flow") / "speech_tokenizer.safetensors"
    answers = write_answer_manifest(speech, out)
    weights = out / "flow.safetensors"
    overrides = [
        f"data.train={out / 'answers.txt'}",
        f"data.tokenizer={tokenizer}",
        f"trainer.max_steps={build.settings.flow_steps}",
        f"model.export_path={weights}",
        f"seed={build.settings.seed}",
        "data.cache_audio=true",
    ]
    extra = None if build.settings.vocoder_size == "tiny" else {"model": {"flow": DEMO_FLOW}}
    fit_recipe(
        "vocoder_flow",
        out / "run",
        overrides,
        extra,
        product=weights,
        precision=build.settings.vocoder_precision,
    )
    return {"answers": answers, "steps": build.settings.flow_steps, "weights": str(weights)}
