"""Speed of a training step in float32 against bf16 mixed precision, per training stage, on this machine.

Each stage of ``tools/bench/training.py`` (the same small models and synthetic batches,
``_training_stages.py``: speech tokenizer, pre-alignment, SFT, Core-Cocktail, DPO, flow, HiFT) trains
under a ``lightning.Trainer`` (CPU) twice from the same weights: ``precision="32-true"`` and
``"bf16-mixed"`` (bf16 autocast; weights, gradients and optimizer state stay float32). They take turns:
each round trains ``--steps`` steps of one precision and then of the other (the order alternates by
round); a callback times each training step, the first of each fit untimed. Printed and written per stage:
each precision's median step time and the paired ratio, the median over rounds of (float32 round median
/ bf16 round median), and the last loss of each (they should be close; "n/a" for HiFT, whose step
returns none).

bf16 pays only where the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX; the JSON records whether
this one does); elsewhere autocast emulates it and is slower than float32. Run it alone: a second busy
process on a 2-core machine swings step times far more than the gap measured.

    python tools/bench/precision.py [--stages core_cocktail,vocoder_hift] [--rounds 3] [--steps 4]
                                    [--threads 2] [--json bench-results/precision.json]
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
from _training_stages import FULL, STAGE_ORDER, build_batch, recipe_settings
from funaudiochat.training.stages import STAGES

PRECISIONS = ("32-true", "bf16-mixed")


def train_steps(module: L.LightningModule, batch, steps: int, precision: str, extra: dict, stage: str):
    """Train ``module`` on ``batch`` ``steps`` + 1 times at ``precision``; returns the timer."""
    timer = StepTimer()
    per_batch = 2 if stage == "vocoder_hift" else 1  # Lightning counts HiFT's G and D steps both
    trainer = L.Trainer(
        accelerator="cpu",
        precision=precision,
        max_steps=per_batch * (steps + 1),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[timer],
        **extra,
    )
    trainer.fit(module, torch.utils.data.DataLoader([batch] * (steps + 1), batch_size=None))
    return timer


def bench_stage(stage: str, rounds: int, steps: int) -> dict:
    """Both precisions of one stage, taking turns; its row of the result."""
    module_cls, _ = STAGES[stage].classes()
    model_args, trainer_args, seed = recipe_settings(stage, rounds * (steps + 1))
    L.seed_everything(seed, verbose=False)
    base = module_cls(**model_args)
    modules = {p: copy.deepcopy(base) for p in PRECISIONS}
    batch, samples = build_batch(stage, FULL)
    seconds = {p: [] for p in PRECISIONS}
    medians = {p: [] for p in PRECISIONS}
    losses = {}
    for r in range(rounds):
        for precision in PRECISIONS[:: 1 if r % 2 == 0 else -1]:
            timer = train_steps(modules[precision], batch, steps, precision, trainer_args, stage)
            seconds[precision] += timer.seconds
            medians[precision].append(statistics.median(timer.seconds))
            losses[precision] = timer.loss
    ratios = [f / b for f, b in zip(medians["32-true"], medians["bf16-mixed"], strict=True)]
    return {
        "stage": stage,
        "batch": samples,
        "median_step_s": {p: statistics.median(s) for p, s in seconds.items()},
        "round_ratios": ratios,
        "ratio_fp32_over_bf16": statistics.median(ratios),
        "last_loss": losses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default=",".join(STAGE_ORDER), help="comma-separated stage names")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per precision and round")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--json", default="bench-results/precision.json")
    args = parser.parse_args()
    stages = [s for s in args.stages.split(",") if s]
    unknown = [s for s in stages if s not in STAGE_ORDER]
    if unknown:
        parser.error(f"unknown stage(s) {unknown}; choose from {list(STAGE_ORDER)}")
    torch.set_num_threads(args.threads)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    rows = []
    print(f"{'stage':<15}{'fp32 ms':>10}{'bf16 ms':>10}{'ratio':>8}   last loss fp32 / bf16")
    for stage in stages:
        row = bench_stage(stage, args.rounds, args.steps)
        rows.append(row)
        ms = {p: 1e3 * s for p, s in row["median_step_s"].items()}
        loss = {p: "n/a" if v is None else f"{v:.4g}" for p, v in row["last_loss"].items()}
        print(
            f"{stage:<15}{ms['32-true']:>10.0f}{ms['bf16-mixed']:>10.0f}{row['ratio_fp32_over_bf16']:>7.2f}x"
            f"   {loss['32-true']} / {loss['bf16-mixed']}"
        )
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    result = {
        "benchmark": "training step, float32 against bf16 mixed precision (CPU)",
        "setup": {
            "sizes": "tools/bench/_training_stages.py (FULL)",
            "threads": args.threads,
            "rounds": args.rounds,
            "steps_per_round": args.steps,
            "native_bf16": native,
            "torch": torch.__version__,
        },
        "stages": rows,
    }
    write_json(args.json, result)


if __name__ == "__main__":
    main()
