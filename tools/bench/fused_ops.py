"""Fused DRSR kernels (``funaudiochat.drsr.ops`` with the compiled extension) vs eager PyTorch, on CPU.

All timings come from this one process: for each case the eager baseline and the fused op run in turns,
after a warm-up, and the best of ``--repeats`` runs counts. Ratios are eager time / fused time (> 1: the
fused op is faster). The fused timings include the ops' Python-side argument checks.

    python tools/bench/fused_ops.py [--repeats 7] [--quick] [--json bench-results/fused_ops.json]

(Not ``kernels.py``: a script's folder comes first on ``sys.path``, and that name would shadow the
``kernels`` package that transformers imports when it is installed, breaking every bench script here.)

Baselines (what a model would write without the kernels):
  group   F.embedding + view + mean (+ the text average)
  ungroup u.view + F.embedding add
  sample  Hugging Face processor order: repetition penalty gather/scatter, temperature, topk mask, sort-based
          top-p, softmax, torch.multinomial (and CosyVoice's RAS check, a Python-level redraw, when on)
Goals: group / ungroup >= 2x, sample >= 3x.

Rows "ungroup (in-place)" time ``ops.ungroup_`` (what ``SpeechRefinedHead.forward`` runs: u is the fresh
output of ``pre_matching``) against the same eager baseline. Each timed call of both sides gets a fresh
copy of u, cloned before the timer starts (so u is equally cache-warm for both); eager only reads it. The
summary reports the in-place rows on a line of their own: they count for the ungroup goal because the
model uses them, while the out-of-place line keeps its old meaning. The JSON rows also carry
``eager_inplace`` (``u.view(...).add_(F.embedding(...))``, printed for information): a stronger baseline.

Huge pages: the fused out-of-place ops (group, ungroup) ``madvise(MADV_HUGEPAGE)`` their fresh outputs of
>= 8 MiB; eager PyTorch does not. Where transparent huge pages are in ``madvise`` mode (this machine's
setting) eager's large fresh tensors (glibc serves > 32 MiB straight from mmap) fault in 4 KiB pages, so
the out-of-place ratios at the shapes whose [B, T, D] output exceeds 32 MiB (B=16, and B=4 with
D >= 2048) partly measure that hint rather than the kernel; with THP ``always`` or a caching allocator
those ratios would shrink. The in-place op allocates nothing, so no hint is involved, but its ratios at
those shapes still include the page faults eager pays for its two fresh [B, T, D] tensors (a real cost of
eager in this setting, not of the kernel).
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from _results import write_json  # tools/bench/_results.py, this folder
from funaudiochat.drsr import ops

VOCAB = 6565
GROUP = 5
SAMPLE_SETTINGS = {
    # Fun-Audio-Chat's generation settings (docs/reference/fun-audio-chat.md §4.4), reused for speech tokens.
    "official": dict(temperature=0.8, top_k=0, top_p=0.9, repetition_penalty=1.2),
    # CosyVoice3 LM: top-k 25, top-p 0.8, RAS window 10, tau 0.1.
    "cosyvoice-ras": dict(
        temperature=1.0, top_k=25, top_p=0.8, repetition_penalty=1.0, ras_window=10, ras_tau=0.1
    ),
    "greedy+penalty": dict(temperature=0.0, top_k=0, top_p=1.0, repetition_penalty=1.2),
}


def best_times(
    fns: dict[str, Callable[[], object]], repeats: int, before: Callable[[], None] | None = None
) -> dict[str, float]:
    """Best wall time of each function; they take turns so that drift in machine load hits all alike.

    before: untimed setup run before every call of every function (e.g. a fresh input for an in-place op).
    """
    for fn in fns.values():
        if before is not None:
            before()
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if before is not None:
                before()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def eager_group(ids: torch.Tensor, table: torch.Tensor, k: int, text: torch.Tensor | None) -> torch.Tensor:
    batch, length = ids.shape
    grouped = F.embedding(ids, table).view(batch, length // k, k, table.shape[1]).mean(2)
    return grouped if text is None else (text + grouped) / 2


def eager_ungroup(u: torch.Tensor, prev_ids: torch.Tensor, table: torch.Tensor, k: int) -> torch.Tensor:
    batch, length, width = u.shape
    return u.view(batch, length * k, width // k) + F.embedding(prev_ids, table)


def eager_ungroup_inplace(
    u: torch.Tensor, prev_ids: torch.Tensor, table: torch.Tensor, k: int
) -> torch.Tensor:
    batch, length, width = u.shape
    return u.view(batch, length * k, width // k).add_(F.embedding(prev_ids, table))


def eager_sample(
    logits: torch.Tensor,
    history: torch.Tensor,
    generator: torch.Generator,
    temperature: float,
    top_k: int,
    top_p: float,
    repetition_penalty: float,
    ras_window: int = 0,
    ras_tau: float = 0.1,
) -> torch.Tensor:
    scores = logits
    if repetition_penalty != 1.0:
        picked = torch.gather(scores, 1, history)
        picked = torch.where(picked < 0, picked * repetition_penalty, picked / repetition_penalty)
        scores = scores.scatter(1, history, picked)
    if temperature <= 0:
        return scores.argmax(dim=1)
    scores = scores / temperature
    full = scores
    if top_k > 0:
        kth = torch.topk(scores, top_k)[0][..., -1, None]
        scores = scores.masked_fill(scores < kth, -torch.inf)
    if top_p < 1.0:
        sorted_logits, sorted_indices = torch.sort(scores, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= 1 - top_p
        remove_sorted[..., -1:] = False
        remove = remove_sorted.scatter(1, sorted_indices, remove_sorted)
        scores = scores.masked_fill(remove, -torch.inf)
    tokens = torch.multinomial(scores.softmax(dim=-1), 1, generator=generator).squeeze(1)
    if ras_window > 0:
        repeats = (history[:, -ras_window:] == tokens[:, None]).sum(dim=1)
        redraw = repeats >= ras_window * ras_tau
        if bool(redraw.any()):
            again = torch.multinomial(full.softmax(dim=-1), 1, generator=generator).squeeze(1)
            tokens = torch.where(redraw, again, tokens)
    return tokens


def bench_group(repeats: int, quick: bool) -> list[dict]:
    rows = []
    dims, batches = ((1024, 4096), (1, 16)) if quick else ((1024, 2048, 4096), (1, 4, 16))
    for dim in dims:
        table = torch.randn(VOCAB, dim)
        for batch in batches:
            length = 1500
            ids = torch.randint(0, VOCAB, (batch, length))
            for text in (None, torch.randn(batch, length // GROUP, dim)):
                eager = partial(eager_group, ids, table, GROUP, text)
                fused = partial(ops.group, ids, table, GROUP, text, backend="extension")
                torch.testing.assert_close(fused(), eager())
                times = best_times({"eager": eager, "fused": fused}, repeats)
                op = "group" if text is None else "group+text"
                rows.append(dict(op=op, shape=f"B={batch} T={length} D={dim}", **times))
    return rows


def bench_ungroup(repeats: int, quick: bool) -> list[dict]:
    rows = []
    dims, batches = ((1024, 4096), (1, 16)) if quick else ((1024, 2048, 4096), (1, 4, 16))
    for dim in dims:
        table = torch.randn(VOCAB, dim)
        for batch in batches:
            length = 1500 // GROUP
            u = torch.randn(batch, length, GROUP * dim)
            prev_ids = torch.randint(0, VOCAB, (batch, length * GROUP))
            eager = partial(eager_ungroup, u, prev_ids, table, GROUP)
            fused = partial(ops.ungroup, u, prev_ids, table, GROUP, backend="extension")
            torch.testing.assert_close(fused(), eager())
            times = best_times({"eager": eager, "fused": fused}, repeats)
            shape = f"B={batch} T={length * GROUP} D={dim}"
            rows.append(dict(op="ungroup", shape=shape, **times))
            inplace = bench_ungroup_inplace(u, prev_ids, table, repeats)
            rows.append(dict(op="ungroup (in-place)", shape=shape, **inplace))
    return rows


def bench_ungroup_inplace(
    u: torch.Tensor, prev_ids: torch.Tensor, table: torch.Tensor, repeats: int
) -> dict[str, float]:
    """ops.ungroup_ vs the eager baseline (and eager add_), each call on a fresh clone of u made untimed."""
    fresh: dict[str, torch.Tensor] = {}

    def refresh() -> None:
        fresh["u"] = u.clone()

    def on_fresh(fn: Callable[..., torch.Tensor]) -> Callable[[], torch.Tensor]:
        return lambda: fn(fresh["u"], prev_ids, table, GROUP)

    fused = partial(ops.ungroup_, backend="extension")
    refresh()
    torch.testing.assert_close(on_fresh(fused)(), eager_ungroup(u, prev_ids, table, GROUP))
    fns = {"eager": on_fresh(eager_ungroup), "fused": on_fresh(fused)}
    fns["eager_inplace"] = on_fresh(eager_ungroup_inplace)
    times = best_times(fns, repeats, before=refresh)
    fresh.clear()
    return times


def fused_sample(
    logits: torch.Tensor, history: torch.Tensor, generator: torch.Generator, **settings
) -> torch.Tensor:
    uniforms = torch.rand(logits.shape[0], 2, generator=generator)
    return ops.sample(logits, history, uniforms, **settings, backend="extension")


def bench_sample(repeats: int, quick: bool) -> list[dict]:
    rows = []
    generator = torch.Generator().manual_seed(0)
    for batch in (1, 16) if quick else (1, 4, 16):
        logits = torch.randn(batch, VOCAB) * 4
        history = torch.randint(0, VOCAB, (batch, 300))
        for name, settings in SAMPLE_SETTINGS.items():
            eager = partial(eager_sample, logits, history, generator, **settings)
            fused = partial(fused_sample, logits, history, generator, **settings)
            times = best_times({"eager": eager, "fused": fused}, repeats * 5)
            rows.append(dict(op=f"sample {name}", shape=f"B={batch} V={VOCAB} H=300", **times))
    return rows


def goal_kind(op: str) -> str:
    """The goal a row counts for: "ungroup (in-place)" -> ungroup_inplace, else the op's first word."""
    return "ungroup_inplace" if op == "ungroup (in-place)" else op.split()[0].split("+")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer shapes")
    parser.add_argument("--json", default="bench-results/fused_ops.json")
    args = parser.parse_args()
    if not ops.extension_available():
        raise SystemExit(f"the extension is not built: {ops.extension_error()}")

    torch.manual_seed(0)
    rows = bench_group(args.repeats, args.quick) + bench_ungroup(args.repeats, args.quick)
    rows += bench_sample(args.repeats, args.quick)
    print(f"{'op':<24} {'shape':<24} {'eager ms':>10} {'fused ms':>10} {'ratio':>7}")
    for row in rows:
        row["ratio"] = row["eager"] / row["fused"]
        print(
            f"{row['op']:<24} {row['shape']:<24} {row['eager'] * 1e3:>10.3f} {row['fused'] * 1e3:>10.3f} "
            f"{row['ratio']:>6.2f}x"
        )
    inplace_rows = [r for r in rows if "eager_inplace" in r]
    if inplace_rows:
        print("ungroup (in-place) vs eager add_ (u.view(...).add_(F.embedding(...)); information, no goal):")
        for row in inplace_rows:
            ms, ratio = row["eager_inplace"] * 1e3, row["eager_inplace"] / row["fused"]
            print(f"  {row['shape']:<24} eager add_ {ms:>9.3f} ms  ratio {ratio:.2f}x")
    goals = {"group": 2.0, "ungroup": 2.0, "ungroup_inplace": 2.0, "sample": 3.0}
    notes = {
        "ungroup": " (out-of-place ops.ungroup)",
        "ungroup_inplace": " (ops.ungroup_, what SpeechRefinedHead runs; counts for the ungroup goal)",
    }
    summary = {}
    for kind, goal in goals.items():
        ratios = [r["ratio"] for r in rows if goal_kind(r["op"]) == kind]
        summary[kind] = dict(
            goal=goal,
            min_ratio=min(ratios),
            max_ratio=max(ratios),
            cases_meeting_goal=sum(r >= goal for r in ratios),
            cases=len(ratios),
        )
        print(
            f"{kind}{notes.get(kind, '')}: ratio {min(ratios):.2f}x .. {max(ratios):.2f}x, goal {goal}x "
            f"met in {summary[kind]['cases_meeting_goal']}/{len(ratios)} cases"
        )
    result = dict(
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        machine=platform.machine(),
        processor=platform.processor(),
        repeats=args.repeats,
        results=rows,
        summary=summary,
    )
    write_json(args.json, result)


if __name__ == "__main__":
    main()
