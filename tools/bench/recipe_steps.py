"""Seconds per training step of a real recipe config, eager and compiled, each in a process of its own.

    python tools/bench/recipe_steps.py --config runs/demo/core_cocktail/run/config.yaml [--steps 60] \
        [--skip 10] [--set KEY=VALUE ...] [--compile true|PATHS]

Where ``tools/bench/compiled_training.py`` pairs synthetic steps of small models, this runs the recipe a
stage of a run recorded (``<run>/<stage>/.../config.yaml``, its data and model as they were) for
``--steps`` steps through Lightning, once as recorded but eager and once with ``compile`` (default: the
stage's ``compile_targets``), one after the other in fresh processes, with no logger, checkpoints or
export. Printed: the median seconds of a step after the first ``--skip`` (compiling and recompiles) and
the first step's seconds, for each. The two runs are minutes apart, so run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUIET = [
    "trainer.logger=false",
    "trainer.callbacks=[]",
    "trainer.enable_checkpointing=false",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def child(config: Path, steps: int, overrides: list[str]) -> dict:
    """One fit of ``config`` in this process; returns its step seconds."""
    import lightning as L
    from funaudiochat.training.cli import build, load_recipe, resolve

    class Steps(L.Callback):
        def __init__(self):
            self.seconds: list[float] = []

        def on_train_batch_start(self, *args) -> None:
            self.start = time.perf_counter()

        def on_train_batch_end(self, *args) -> None:
            self.seconds.append(time.perf_counter() - self.start)

    recipe = resolve(load_recipe([config], [f"trainer.max_steps={steps}", *QUIET, *overrides]))
    for key in ("export_dir", "export_path"):  # nothing is exported
        if key in recipe["model"]:
            recipe["model"][key] = None if key == "export_dir" else str(Path(tempfile.mkdtemp()) / "unused")
    model, data, trainer = build(recipe)
    timer = Steps()
    trainer.callbacks.append(timer)
    trainer.fit(model, datamodule=data)
    return {"seconds": timer.seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="a run's recorded config.yaml")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--skip", type=int, default=10, help="first steps left out of the median")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more overrides")
    parser.add_argument("--compile", default="true", help="the compiled run's compile value")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one fit, JSON on the last line
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.config, args.steps, json.loads(args.child))))
        return 0
    if not args.config.is_file():
        parser.error(f"{args.config} does not exist")
    if not 0 <= args.skip < args.steps:
        parser.error("--skip must be at least 0 and less than --steps")
    rows = {}
    for name, extra in (("eager", ["compile=false"]), ("compiled", [f"compile={args.compile}"])):
        overrides = [*args.set, *extra]
        command = [sys.executable, __file__, "--config", str(args.config), "--steps", str(args.steps)]
        done = subprocess.run(
            [*command, "--child", json.dumps(overrides)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return done.returncode
        seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
        rows[name] = statistics.median(seconds[args.skip :])
        print(f"{name:<9} first step {seconds[0]:7.1f} s   median step {rows[name]:.4f} s", flush=True)
    print(f"eager / compiled: {rows['eager'] / rows['compiled']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
