"""Training steps with and without ``torch.compile`` (a recipe's ``compile: true``), paired in one process.

    python tools/bench/compiled_training.py [--steps 20] [--warmup 3] [--threads 2] [--out FILE.json]

For each stage the stage's own LightningModule is built twice from the same seed, and one copy gets the
stage's ``compile_targets`` compiled (``funaudiochat.training.cli.compile_submodules``, dynamic shapes):

- ``text_lm``: the demo text LLM of ``recipes/text_lm.yaml`` (Qwen3, 256 wide, 4 layers; the committed
  demo text tokenizer, ``artifacts/demo_build/text_tokenizer``), on 16 chats of 48-80 tokens;
- ``pre_alignment``: the speech LLM of ``tools/bench/_training_stages.py`` (LLM 512 x 4, SRH 256 x 2,
  audio encoder 128 x 2) under the pre-alignment recipe's settings, on its synthetic conversations.

Each training step (forward under bf16 autocast as the demo recipe trains, backward, gradient clipping,
AdamW) runs on both copies in turn, alternating which goes first, so that the machine's load hits both
alike. The batch lengths change from step to step (the recipes bucket by length), so the compiled copy
meets new shapes as it does in training. Printed per stage: the seconds the compiled copy's first
``--warmup`` steps took beyond the eager copy's (compiling), the median seconds of a step of each after
the warm-up, and the ratio eager / compiled (the median over the steps of the paired ratio). The
seconds depend on the machine; the ratio is the figure to compare.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

LENGTHS = (48, 64, 80, 56, 72)  # the text batches' lengths, in turn


def text_lm_pair(seed: int):
    """Two TextLMModules (demo size) and a batch maker ``step -> batch``."""
    from funaudiochat.training.llm.text_lm import TextLMModule
    from omegaconf import OmegaConf

    llm = OmegaConf.to_container(OmegaConf.load(ROOT / "packages/training/recipes/text_lm.yaml").model.llm)
    tokenizer = str(ROOT / "artifacts/demo_build/text_tokenizer")
    modules = [TextLMModule(tokenizer=tokenizer, llm=llm, init_seed=seed) for _ in range(2)]
    vocab = len(modules[0].tokenizer) - 40  # ordinary tokens only

    def batch(step: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(seed * 1000 + step)
        ids = torch.randint(0, vocab, (16, LENGTHS[step % len(LENGTHS)]), generator=generator)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}

    return modules, batch


def speech_llm_pair(seed: int):
    """Two pre-alignment SpeechLLMModules (the training bench's small speech LLM) and a batch maker."""
    from _training_stages import conversation_batch, recipe_settings
    from funaudiochat.training.stages import STAGES

    kwargs, _, _ = recipe_settings("pre_alignment", 1000)
    module_cls, _ = STAGES["pre_alignment"].classes()
    modules = []
    for _ in range(2):
        torch.manual_seed(seed)
        modules.append(module_cls(**kwargs))

    def batch(step: int) -> dict:
        return conversation_batch(4, 0.6 + 0.1 * (step % 4), prompt_seed=step, answer_seed=step + 1)

    return modules, batch


PAIRS = {"text_lm": text_lm_pair, "pre_alignment": speech_llm_pair}


def train_step(module, optimizer, batch, step: int) -> float:
    """Forward (bf16 autocast), backward, clipping at 1.0, AdamW; returns the step's seconds."""
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = module.training_step(batch, step)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def measure(stage: str, steps: int, warmup: int, seed: int) -> dict:
    import warnings

    from funaudiochat.training.cli import compile_submodules
    from funaudiochat.training.stages import STAGES

    (eager, compiled), batch = PAIRS[stage](seed)
    compile_submodules(compiled, STAGES[stage].compile_targets)
    optimizers = [
        torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4) for m in (eager, compiled)
    ]
    seconds: list[list[float]] = [[], []]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's "self.log() without a Trainer"
        for step in range(warmup + steps):
            order = (0, 1) if step % 2 == 0 else (1, 0)
            for which in order:
                module = (eager, compiled)[which]
                seconds[which].append(train_step(module, optimizers[which], batch(step), step))
    timed = [s[warmup:] for s in seconds]
    return {
        "stage": stage,
        "targets": list(STAGES[stage].compile_targets),
        "compile_s": sum(seconds[1][:warmup]) - sum(seconds[0][:warmup]),
        "eager_step_s": statistics.median(timed[0]),
        "compiled_step_s": statistics.median(timed[1]),
        "ratio": statistics.median(e / c for e, c in zip(*timed, strict=True)),
        "steps": steps,
        "warmup": warmup,
    }


def stage_parser(description: str) -> argparse.ArgumentParser:
    """The arguments the compiled-fit benches share: ``--stage`` (of ``PAIRS``), ``--steps``, ``--warmup``
    (untimed first steps of each copy: the compiling), ``--seed``, ``--out``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--stage", action="append", choices=sorted(PAIRS), help="(repeatable; default all)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per copy")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps of each copy (compiling)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    return parser


def main(argv=None) -> int:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 1 or args.threads < 1:
        parser.error("--steps, --warmup and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    results = []
    header = ("stage", "compile s", "eager s/step", "compiled s/step", "eager/compiled")
    print(f"{header[0]:<14} {header[1]:>9} {header[2]:>12} {header[3]:>15} {header[4]:>14}")
    for stage in args.stage or list(PAIRS):
        r = measure(stage, args.steps, args.warmup, args.seed)
        results.append(r)
        row = f"{stage:<14} {r['compile_s']:>9.1f} {r['eager_step_s']:>12.4f} {r['compiled_step_s']:>15.4f}"
        print(f"{row} {r['ratio']:>13.2f}x", flush=True)
    if args.out is not None:
        from _results import write_json

        write_json(args.out, {"threads": args.threads, "torch": torch.__version__, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
