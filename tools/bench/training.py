"""Training speed and memory of every stage on a small config, with and without the fused DRSR kernels.

For each stage of ``funaudiochat.training.stages`` the stage's own LightningModule, built with its recipe's
``model:`` settings (``packages/training/recipes/<stage>.yaml``: optimizer, schedule, freezing, loss weights)
but a small model, trains through a ``lightning.Trainer`` (CPU, one device, no logger, no checkpoints, the
recipe's ``gradient_clip_val``) on one synthetic batch repeated. Reported per (stage, kernels):

- samples/s: samples of one batch / the median wall time of a training step (forward, backward, optimizer
  step(s), Lightning's hooks), over ``--steps`` steps that follow ``--warmup`` untimed ones. A sample is a
  conversation (pre_alignment, sft, core_cocktail), a preference pair (dpo; 2 policy forwards with grad
  and 2 reference forwards), an utterance (tokenizer, vocoder_flow) or a 1.04 s segment (vocoder_hift,
  generator + discriminator steps);
- ratio ext/ref: samples/s with the extension / samples/s with the reference, for the stages that use the
  kernels: the median over the timed steps of (reference step time / extension step time), step i of
  both having run back to back (see below; the JSON also has the ratio of the median samples/s). Only
  the speech LLM uses them: ``group`` (grouping the speech tokens into 5 Hz features) and ``ungroup_``
  (the Speech Refined Head's input) in every forward; ``sample`` is not used in training. The backend is
  chosen per call from ``FUNAUDIOCHAT_DRSR_OPS`` (``extension`` / ``reference``), which each run sets;
  the JSON counts the calls per step, and how many of them the reference served, as a check, and times
  the ops' forward calls (``drsr_ops_forward_ms_per_step``: their share of a step). The tokenizer and
  vocoder stages do not use the kernels and run once ("n/a");
- peak MB: peak resident memory (RSS) during training minus the RSS right before ``Trainer.fit`` (model and
  batch built): optimizer state, gradients, activations, allocator and Lightning overhead. Linux:
  ``/proc/self/status`` VmRSS before, VmHWM after (the high-water mark is reset by writing 5 to
  ``/proc/self/clear_refs`` just before ``fit``); where that reset is refused, ``ru_maxrss`` (which may
  include earlier peaks of the process);
- torch's own view (torch keeps no allocator statistics on the CPU, so two others): ``step MB``, the
  peak bytes of tensors allocated during one extra, untimed step (after the timed ones) that are live at
  once, from the ``torch.profiler`` memory events: activations, fresh gradients and temporaries, not the
  parameters and optimizer moments that existed before the step; ``live MB``, the bytes of all tensors
  reachable by Python's gc between two steps (parameters, gradients, optimizer state, frozen copies such
  as DPO's reference model and Core-Cocktail's M0, the batch).

Each (stage, kernels) runs in its own child process, forked from this one after it imported torch,
Lightning and the stage modules (the imports are neither timed nor counted), so each has its own memory
figures. The reference and extension runs of a stage live side by side and take turns, one training step
at a time, in alternating order (ref ext, ext ref, ...): while one steps, the other waits, so that changes
in the machine's load hit both alike (runs made one after the other, minutes apart, gave ratios far apart
for work that differs by a few milliseconds per step; see docs/benchmarks.md). Timings on a shared
machine stay noisy: rerun, or raise ``--steps``, before trusting a ratio near 1.

Synthetic, realistically shaped batches (values are random; speed and memory do not depend on them):

- speech LLM stages: batches in the official training layout (``tests/drsr/golden/README.md``), per
  conversation a system prompt, a user turn of 3-5 s of audio (continuous-encoder log-mel at 100 Hz and
  25 Hz speech rows) and an assistant reply of 4-8 s of speech (10-token delay, random codes, a per-group
  transcript), right-padded. Model: Qwen3 LLM width 512, 4 layers, text vocabulary 1000; SRH width 256,
  2 layers; audio encoder width 128, 2 layers. 8 conversations per batch; DPO: 4 pairs whose chosen and
  rejected replies differ (codes, transcript and length) after the same prompts;
- tokenizer: 8 log-mels of 4-6 s with character transcripts (12 per second); ``SpeechTokenizerConfig.tiny``
  and the recipe's CTC head;
- vocoder_flow: 8 utterances of 100-200 tokens (4-8 s) with their 50 Hz mel targets; flow width 256,
  4 DiT blocks (the demo size of ``tools/bench/vocoder.py``);
- vocoder_hift: 8 segments of 52 frames (the recipe's 24960 samples); HiFT ``base_channels`` 128 (demo
  size) against the recipe's tiny discriminator.

``--quick`` (a smoke test): 2 samples per batch (1 DPO pair), half-length audio and HiFT segments, 1 warm-up
and 2 timed steps.

Threads: one intra-op thread per run by default (``--threads 0``: torch's default, all cores). On a small
machine shared with other processes, OpenMP's waiting threads make multi-threaded timings swing far more
than single-threaded ones (docs/benchmarks.md); on a dedicated machine, raise it. Measured figures are
kept in docs/benchmarks.md.

    python tools/bench/training.py [--stages sft,dpo] [--steps 8] [--warmup 2] [--quick] [--threads 1]
                                   [--json bench-results/training.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from _training_stages import (  # tools/bench/_training_stages.py, this folder
    FULL,
    KERNEL_STAGES,
    QUICK,
    STAGE_ORDER,
    UNITS,
    build_batch,
    recipe_settings,
    size_batches,
)
from funaudiochat.drsr import ops
from funaudiochat.training.stages import STAGES

KERNELS = ("reference", "extension")  # reference first: the baseline, then the fused run right after it
GO, DONE = "go", "done"  # the turn protocol between the parent and its children (see run_stage)


# ---- measuring (in the child process) ----------------------------------------------------------------------


def proc_status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb() -> float:
    kb = proc_status_kb("VmRSS")
    if kb is not None:
        return kb / 1024
    import psutil  # no /proc (not Linux)

    return psutil.Process().memory_info().rss / 2**20


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return proc_status_kb("VmHWM") is not None


def peak_rss_mb(was_reset: bool) -> tuple[float, str]:
    if was_reset:
        return proc_status_kb("VmHWM") / 1024, "VmHWM (reset before fit)"
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return (maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024), "ru_maxrss (not reset)"


def live_tensor_mb() -> float:
    """MB of the distinct storages of all tensors Python's gc can reach."""
    seen, total = set(), 0
    for obj in gc.get_objects():
        try:
            if not isinstance(obj, torch.Tensor) or obj.is_sparse or obj.device.type == "meta":
                continue
            storage = obj.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes())
        except (RuntimeError, TypeError, NotImplementedError):
            continue
        if key not in seen:
            seen.add(key)
            total += storage.nbytes()
    return total / 2**20


def profiler_peak_mb(profiler) -> float | None:
    """Peak of the bytes allocated within the profiled span and live at once (``[memory]`` events)."""
    try:
        events = profiler.profiler.kineto_results.events()
        deltas = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    except (AttributeError, RuntimeError):
        return None
    current = peak = 0
    for _, delta in deltas:
        current += delta
        peak = max(peak, current)
    return peak / 2**20


class OpCounter:
    """Counts the calls of the fused-op entry points (``ops.group`` ...) and of their references, and times
    the entry points (forward only: their backward runs inside autograd)."""

    NAMES = ("group", "ungroup", "ungroup_")

    def __init__(self) -> None:
        self.calls = dict.fromkeys(self.NAMES, 0)
        self.reference = dict.fromkeys(self.NAMES, 0)
        self.seconds = 0.0
        for name in self.NAMES:
            setattr(ops, name, self._wrap(getattr(ops, name), self.calls, name, timed=True))
            setattr(ops.reference, name, self._wrap(getattr(ops.reference, name), self.reference, name))

    def _wrap(self, fn, counts: dict[str, int], name: str, timed: bool = False):
        def counted(*args, **kwargs):
            counts[name] += 1
            if not timed:
                return fn(*args, **kwargs)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return counted

    def snapshot(self) -> tuple[int, int, float]:
        return sum(self.calls.values()), sum(self.reference.values()), self.seconds


class Probe(L.Callback):
    """Times steps ``warmup .. warmup + steps - 1``; profiles the step after them (memory only). Before each
    step it waits for the parent's turn signal on ``gate``, and reports the step's end there."""

    def __init__(self, warmup: int, steps: int, counter: OpCounter, gate):
        self.warmup, self.steps, self.counter, self.gate = warmup, steps, counter, gate
        self.times: list[float] = []
        self.ops_before = self.ops_after = (0, 0, 0.0)
        self.losses: list[float] = []
        self.peak: tuple[float, str] | None = None
        self.rss_reset = False
        self.live_mb = self.step_mb = None
        self._start = 0.0
        self._profiler = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.gate.recv() != GO:
            raise RuntimeError("the bench's parent process stopped this run")
        if batch_idx == self.warmup:
            self.ops_before = self.counter.snapshot()
        if batch_idx == self.warmup + self.steps:  # the timed steps are over: memory views
            self.ops_after = self.counter.snapshot()
            self.peak = peak_rss_mb(self.rss_reset)
            self.live_mb = live_tensor_mb()
            from torch.profiler import ProfilerActivity, profile

            self._profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
            self._profiler.start()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        end = time.perf_counter()
        if self.warmup <= batch_idx < self.warmup + self.steps:
            self.times.append(end - self._start)
        if self._profiler is not None:
            self._profiler.stop()
            self.step_mb = profiler_peak_mb(self._profiler)
            self._profiler = None
        loss = outputs["loss"] if isinstance(outputs, dict) and "loss" in outputs else None
        if loss is None:
            loss = trainer.callback_metrics.get("train/loss_g")
        if loss is not None:
            self.losses.append(float(loss))
        self.gate.send(DONE)


def run_one(stage: str, kernels: str, size: dict[str, Any], threads: int, gate) -> dict[str, Any]:
    """Build, train and measure one (stage, kernels) configuration; runs in a child process, one training
    step per turn given on ``gate`` (see ``run_stage``)."""
    if kernels != "n/a":
        os.environ[ops.ENV_BACKEND] = kernels
    if threads > 0:
        torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warmup, steps = size["warmup"], size["steps"]
    batches = size_batches(size)
    module_cls, _ = STAGES[stage].classes()
    model_args, trainer_args, seed = recipe_settings(stage, batches)
    L.seed_everything(seed, verbose=False)
    module = module_cls(**model_args)
    batch, samples = build_batch(stage, size)
    optimizer_steps = 2 if stage == "vocoder_hift" else 1  # Lightning counts G and D steps both
    counter = OpCounter()
    probe = Probe(warmup, steps, counter, gate)
    with tempfile.TemporaryDirectory(prefix="bench-training-") as root:
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            max_epochs=1,
            max_steps=batches * optimizer_steps,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=root,
            callbacks=[probe],
            **trainer_args,
        )
        loader = torch.utils.data.DataLoader([batch] * batches, batch_size=None)
        gc.collect()
        rss_before = rss_mb()
        probe.rss_reset = reset_peak_rss()
        trainer.fit(module, train_dataloaders=loader)
    if len(probe.times) != steps or probe.peak is None:
        raise RuntimeError(f"{stage}: expected {steps} timed steps, got {len(probe.times)}")
    step_s = statistics.median(probe.times)
    calls = probe.ops_after[0] - probe.ops_before[0]
    reference_calls = probe.ops_after[1] - probe.ops_before[1]
    if kernels == "n/a" and calls:
        raise RuntimeError(f"{stage} called the DRSR ops {calls} times: add it to KERNEL_STAGES")
    if kernels != "n/a" and not calls:
        raise RuntimeError(f"{stage} did not call the DRSR ops: it cannot compare the kernels")
    if reference_calls != (calls if kernels == "reference" else 0):
        raise RuntimeError(
            f"{stage} ({kernels}): the reference served {reference_calls} of {calls} DRSR op calls"
        )
    params = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    peak, peak_source = probe.peak
    return {
        "stage": stage,
        "kernels": kernels,
        "unit": UNITS[stage],
        "batch": samples,
        "warmup_steps": warmup,
        "steps": steps,
        "step_s": step_s,
        "step_s_all": probe.times,
        "samples_per_s": samples / step_s,
        "rss_before_mb": rss_before,
        "rss_peak_mb": peak,
        "peak_rss_growth_mb": max(peak - rss_before, 0.0),
        "peak_source": peak_source,
        "torch_step_alloc_peak_mb": probe.step_mb,
        "torch_live_tensors_mb": probe.live_mb,
        "drsr_op_calls_per_step": calls / steps,
        "drsr_reference_calls_per_step": reference_calls / steps,
        "drsr_ops_forward_ms_per_step": 1e3 * (probe.ops_after[2] - probe.ops_before[2]) / steps,
        "params": params,
        "trainable_params": trainable,
        "losses": probe.losses,
        "threads": torch.get_num_threads(),
        "module_args": model_args,
        "trainer_args": trainer_args,
    }


def child(stage: str, kernels: str, size: dict, threads: int, log_path: str, conn) -> None:
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)  # Lightning, the profiler and C++ warnings write here; shown only on failure
    os.dup2(log, 2)
    try:
        conn.send({"ok": run_one(stage, kernels, size, threads, conn)})
    except BaseException:
        conn.send({"error": traceback.format_exc()})
    finally:
        conn.close()


def run_stage(stage: str, kernels_list: tuple[str, ...], size: dict, threads: int) -> list[dict[str, Any]]:
    """One child process per kernels setting of ``stage``, all alive at once and taking turns: each training
    step of each child waits for the parent's signal, and the others wait while it runs. The order of the
    turns alternates (A B, B A, ...), so that changes in the machine's load hit every setting alike."""
    context = multiprocessing.get_context("fork")
    runs = {}
    try:
        for kernels in kernels_list:
            with tempfile.NamedTemporaryFile(prefix="bench-training-", suffix=".log", delete=False) as log:
                log_path = log.name
            conn, child_conn = context.Pipe()
            process = context.Process(
                target=child, args=(stage, kernels, size, threads, log_path, child_conn)
            )
            process.start()
            child_conn.close()
            runs[kernels] = {"process": process, "conn": conn, "log": log_path, "message": None}
        active = list(kernels_list)
        for turn in range(size_batches(size)):
            for kernels in active if turn % 2 == 0 else active[::-1]:
                run = runs[kernels]
                try:
                    run["conn"].send(GO)
                except OSError:
                    pass  # it may have sent its error and exited before this turn: read that below
                try:
                    message = run["conn"].recv()
                except (EOFError, OSError):
                    message = {"error": "the child process died"}
                if message != DONE:  # it failed (or stopped early): no more turns for it
                    run["message"] = message
            active = [k for k in active if runs[k]["message"] is None]
        rows = []
        for kernels in kernels_list:
            run = runs[kernels]
            if run["message"] is None:
                try:
                    run["message"] = run["conn"].recv()
                except (EOFError, OSError):
                    run["message"] = {"error": "the child process died"}
            run["process"].join()
            message = run["message"]
            if "ok" in message:
                rows.append(message["ok"])
                continue
            error = message.get("error", f"unexpected message {message!r}")
            if "died" in error:
                error += f" (exit code {run['process'].exitcode})"
            tail = Path(run["log"]).read_text(errors="replace")[-3000:]
            rows.append({"stage": stage, "kernels": kernels, "error": error, "log_tail": tail})
        return rows
    finally:
        for run in runs.values():
            if run["process"].is_alive():
                run["process"].kill()
                run["process"].join()
            os.unlink(run["log"])


# ---- the parent --------------------------------------------------------------------------------------------


def add_ratios(rows: list[dict[str, Any]]) -> None:
    by_key = {(r["stage"], r["kernels"]): r for r in rows if "error" not in r}
    for row in rows:
        row.setdefault("ratio_ext_over_ref", None)
        if "error" in row or row["kernels"] != "extension" or (row["stage"], "reference") not in by_key:
            continue
        base = by_key[(row["stage"], "reference")]
        # steps i of both ran back to back (see run_stage): the median of their time ratios
        pairs = zip(base["step_s_all"], row["step_s_all"], strict=True)
        row["ratio_ext_over_ref"] = statistics.median(ref / ext for ref, ext in pairs)
        row["ratio_of_medians_ext_over_ref"] = row["samples_per_s"] / base["samples_per_s"]
        row["peak_ratio_ext_over_ref"] = row["peak_rss_growth_mb"] / max(base["peak_rss_growth_mb"], 1e-9)


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]], size: dict[str, Any], threads: int) -> None:
    print(
        f"training steps on CPU ({threads} thread{'s' if threads != 1 else ''}), {size['warmup']} warm-up + "
        f"{size['steps']} timed steps (median), synthetic batches\n"
        "peak MB: RSS growth over the RSS before fit; step MB: peak of the tensors allocated in one step "
        "(torch.profiler); live MB: tensors alive between steps; ops ms: DRSR ops forward time per step"
    )
    print(
        f"{'stage':<14} {'kernels':<10} {'batch':>15} {'s/step':>8} {'samples/s':>10} {'ext/ref':>8} "
        f"{'peak MB':>8} {'step MB':>8} {'live MB':>8} {'ops ms':>7}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['stage']:<14} {r['kernels']:<10} FAILED: {r['error'].strip().splitlines()[-1]}")
            continue
        if r["kernels"] == "n/a":
            ratio = "n/a"
        elif r["kernels"] == "reference":
            ratio = "base"
        else:
            ratio = fmt(r["ratio_ext_over_ref"], ".2f") + ("x" if r["ratio_ext_over_ref"] else "")
        batch = f"{r['batch']} {r['unit']}{'s' if r['batch'] != 1 else ''}"
        print(
            f"{r['stage']:<14} {r['kernels']:<10} {batch:>15} {r['step_s']:>8.3f} "
            f"{r['samples_per_s']:>10.2f} {ratio:>8} {r['peak_rss_growth_mb']:>8.0f} "
            f"{fmt(r['torch_step_alloc_peak_mb'], '.0f'):>8} {fmt(r['torch_live_tensors_mb'], '.0f'):>8} "
            f"{fmt(r['drsr_ops_forward_ms_per_step'] if r['kernels'] != 'n/a' else None, '.1f'):>7}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default=",".join(STAGE_ORDER), help="comma-separated stage names")
    parser.add_argument("--steps", type=int, default=None, help=f"timed steps (default {FULL['steps']})")
    parser.add_argument("--warmup", type=int, default=None, help=f"untimed steps (default {FULL['warmup']})")
    parser.add_argument("--quick", action="store_true", help="smoke test: small batches, 1 + 2 steps")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads per run (0: torch's default, all cores)",
    )
    parser.add_argument("--json", default="bench-results/training.json")
    args = parser.parse_args(argv)

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGE_ORDER))
    if unknown or not stages:
        parser.error(f"unknown stages {unknown}; choose from {','.join(STAGE_ORDER)}")
    size = dict(QUICK if args.quick else FULL)
    for key in ("steps", "warmup"):
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    if size["steps"] < 1 or size["warmup"] < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    if any(s in KERNEL_STAGES for s in stages) and not ops.extension_available():
        print(f"note: the DRSR extension is not built ({ops.extension_error()}); its runs will fail")
    for stage in stages:  # imported here once, so that the children do not pay (or time) the imports
        STAGES[stage].classes()

    rows = []
    for stage in stages:
        kernels = KERNELS if stage in KERNEL_STAGES else ("n/a",)
        print(f"running {stage} ({', '.join(kernels)}) ...", flush=True)
        rows += run_stage(stage, kernels, size, args.threads)
    add_ratios(rows)
    threads = args.threads if args.threads > 0 else torch.get_num_threads()
    print_table(rows, size, threads)
    for r in rows:
        if "error" in r:
            print(f"\n{r['stage']} ({r['kernels']}) failed:\n{r['error']}\nlog tail:\n{r['log_tail']}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "threads": threads,
        "extension_available": ops.extension_available(),
    }
    out.write_text(json.dumps({"args": vars(args), "size": size, "machine": machine, "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
