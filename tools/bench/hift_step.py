"""Speed of a HiFT GAN training step with the discriminator channels-last (the default) against plain NCHW.

The demo recipe's HiFT stage (``training/demo/vocoder_stages.py``: generator width 64, the recipe's tiny
discriminator, 26-frame segments, 8 per batch) is its dearest on a CPU, and most of a step is the
multi-resolution discriminator's narrow 2-D convolutions (``training/vocoder/discriminators.py``,
``conv_channels_last``). Both variants are the real ``HiFTModule.training_step`` (generator and
discriminator updates) under a ``lightning.Trainer`` on one synthetic batch (random mel, waveform and F0:
the speed does not depend on the values), built from the same seed. They take turns: each round trains
``--steps`` steps of one variant, then of the other (the order alternates by round), and a callback times
each step; the first step of each fit is not timed. Printed and written: each variant's median step time
and the paired ratio, the median over rounds of (NCHW round median / channels-last round median).

    python tools/bench/hift_step.py [--rounds 5] [--steps 4] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import warnings

import lightning as L
import torch
from _results import write_json  # tools/bench/_results.py, this folder
from _step_timer import StepTimer  # tools/bench/_step_timer.py
from funaudiochat.training.demo.vocoder_stages import DEMO_HIFT, HIFT_SEGMENT_FRAMES
from funaudiochat.training.vocoder.hift_module import HiFTModule

VARIANTS = {"channels_last": True, "nchw": False}
BATCH = 8


def synthetic_batch(frames: int) -> dict[str, torch.Tensor]:
    """One batch in ``VocoderDataModule(task="hift")``'s layout: 480 samples per mel frame."""
    g = torch.Generator().manual_seed(0)
    return {
        "speech": torch.randn(BATCH, 480 * frames, generator=g) * 0.1,
        "speech_feat": torch.randn(BATCH, frames, 80, generator=g),
        "pitch_feat": torch.rand(BATCH, frames, generator=g) * 200,
    }


def train_steps(module: HiFTModule, batch: dict[str, torch.Tensor], steps: int) -> list[float]:
    """Train ``module`` ``steps`` + 1 batches; returns the seconds of all but the first."""
    timer = StepTimer()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2 * (steps + 1),  # Lightning counts the generator's and the discriminator's steps
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, torch.utils.data.DataLoader([batch] * (steps + 1), batch_size=None))
    return timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant and round")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--json", default="bench-results/hift_step.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    torch.manual_seed(0)
    base = HiFTModule(hift=DEMO_HIFT, discriminator={"preset": "tiny"})
    modules = {}
    for name, channels_last in VARIANTS.items():
        torch.manual_seed(0)
        modules[name] = HiFTModule(
            hift=DEMO_HIFT, discriminator={"preset": "tiny", "channels_last": channels_last}
        )
        modules[name].load_state_dict(copy.deepcopy(base.state_dict()))
    batch = synthetic_batch(HIFT_SEGMENT_FRAMES)

    seconds = {name: [] for name in VARIANTS}
    round_medians = {name: [] for name in VARIANTS}
    for r in range(args.rounds):
        for name in list(VARIANTS)[:: 1 if r % 2 == 0 else -1]:
            took = train_steps(modules[name], batch, args.steps)
            seconds[name] += took
            round_medians[name].append(statistics.median(took))
    ratios = [n / c for n, c in zip(round_medians["nchw"], round_medians["channels_last"], strict=True)]
    result = {
        "benchmark": "HiFT GAN training step, discriminator channels-last vs NCHW",
        "setup": {
            "hift": DEMO_HIFT,
            "discriminator": "tiny",
            "segment_frames": HIFT_SEGMENT_FRAMES,
            "batch": BATCH,
            "threads": args.threads,
            "rounds": args.rounds,
            "steps_per_round": args.steps,
            "torch": torch.__version__,
        },
        "median_step_s": {name: statistics.median(s) for name, s in seconds.items()},
        "round_ratios": ratios,
        "speedup_nchw_over_channels_last": statistics.median(ratios),
    }
    for name, s in result["median_step_s"].items():
        print(f"{name:14s} {s * 1000:7.1f} ms per step (median of {len(seconds[name])})")
    speedup = result["speedup_nchw_over_channels_last"]
    print(f"channels-last speed-up (paired median over rounds): {speedup:.2f}x")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
