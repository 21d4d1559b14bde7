"""What a compiled fit gains when its threads are raised while it runs (``training.threads``), paired in
one process.

    python tools/bench/raised_threads.py [--steps 20] [--warmup 3] [--threads 2] [--out FILE.json]

A demo stage started beside another gets one thread and compiles its model with it; when it is left
alone the scheduler raises it to every core (``torch.set_num_threads``). The kernels ``torch.compile``
generated keep the one thread they were compiled with; the matrix products and the rest follow. For each
stage of ``compiled_training.py`` (the demo text LLM, the bench's speech LLM under pre-alignment), two
copies are built from the same seed and compiled: ``early`` with 1 thread, ``alone`` with ``--threads``.
Each timed step then runs ``early`` at 1 thread, ``early`` raised to ``--threads`` and ``alone`` at
``--threads``, in an order that turns from step to step. Printed per stage: the median seconds of a step
of each, and the median paired ratios ``1 thread / raised`` (what raising gains) and ``1 thread /
compiled with all`` (what a stage started alone gets). The ratios are the figures to compare.
"""

from __future__ import annotations

import statistics
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

RUNS = ("one_thread", "raised", "compiled_with_all")  # (copy, threads) of each timed step, named


def measure(stage: str, steps: int, warmup: int, threads: int, seed: int) -> dict:
    import torch._inductor.config as inductor_config
    from compiled_training import PAIRS, train_step
    from funaudiochat.training.cli import compile_submodules
    from funaudiochat.training.stages import STAGES

    inductor_config.fx_graph_cache = False  # each copy's kernels generated for its own thread count
    (early, alone), batch = PAIRS[stage](seed)
    optimizers = {
        id(m): torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
        for m in (early, alone)
    }
    runs = {"one_thread": (early, 1), "raised": (early, threads), "compiled_with_all": (alone, threads)}
    seconds: dict[str, list[float]] = {name: [] for name in RUNS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's "self.log() without a Trainer"
        for module, count in ((early, 1), (alone, threads)):  # each compiled at its own count
            torch.set_num_threads(count)
            compile_submodules(module, STAGES[stage].compile_targets)
            for step in range(warmup):
                train_step(module, optimizers[id(module)], batch(step), step)
        for step in range(steps):
            names = RUNS[step % 3 :] + RUNS[: step % 3]
            for name in names:
                module, count = runs[name]
                torch.set_num_threads(count)
                seconds[name].append(train_step(module, optimizers[id(module)], batch(warmup + step), step))
    paired = {
        name: statistics.median(a / b for a, b in zip(seconds["one_thread"], seconds[name], strict=True))
        for name in ("raised", "compiled_with_all")
    }
    return {
        "stage": stage,
        **{f"{name}_step_s": statistics.median(values) for name, values in seconds.items()},
        "raised_speedup": paired["raised"],
        "compiled_with_all_speedup": paired["compiled_with_all"],
        "steps": steps,
        "warmup": warmup,
    }


def main(argv=None) -> int:
    from compiled_training import PAIRS, stage_parser

    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="the count a fit is raised to")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 1 or args.threads < 2:
        parser.error("--steps and --warmup must be at least 1, --threads at least 2")
    results = []
    header = ("stage", "1 thread s", "raised s", "all s", "raised gain", "all gain")
    print(f"{header[0]:<14} {header[1]:>10} {header[2]:>9} {header[3]:>7} {header[4]:>12} {header[5]:>9}")
    for stage in args.stage or list(PAIRS):
        r = measure(stage, args.steps, args.warmup, args.threads, args.seed)
        results.append(r)
        print(
            f"{stage:<14} {r['one_thread_step_s']:>10.4f} {r['raised_step_s']:>9.4f} "
            f"{r['compiled_with_all_step_s']:>7.4f} {r['raised_speedup']:>11.2f}x "
            f"{r['compiled_with_all_speedup']:>8.2f}x",
            flush=True,
        )
    if args.out is not None:
        from _results import write_json

        write_json(args.out, {"threads": args.threads, "torch": torch.__version__, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
