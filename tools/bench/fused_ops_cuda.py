"""Fused DRSR kernels on a CUDA device vs eager PyTorch on the same device (needs a GPU).

The GPU twin of ``fused_ops.py``, with the same eager baselines (imported from it) and shapes. Timing uses
CUDA events around ``--iters`` back-to-back calls, after a warm-up; eager and fused take turns for
``--repeats`` rounds and the median per call counts. Ratios are eager time / fused time (> 1: the fused
kernel is faster). Before timing, every case checks the fused output against eager (sampling: greedy
agreement only, since eager draws with ``torch.multinomial``).

    python tools/bench/fused_ops_cuda.py [--repeats 5] [--iters 50] [--json bench-results/fused_ops_cuda.json]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from functools import partial

import torch
from _results import write_json  # tools/bench/_results.py, this folder
from funaudiochat.drsr import ops
from fused_ops import GROUP, SAMPLE_SETTINGS, VOCAB, eager_group, eager_sample, eager_ungroup


def median_ms(fns: dict[str, Callable[[], object]], repeats: int, iters: int) -> dict[str, float]:
    """Median milliseconds per call of each function, timed with CUDA events, the functions taking turns."""
    for fn in fns.values():
        for _ in range(3):
            fn()
    torch.cuda.synchronize()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            end.synchronize()
            times[name].append(start.elapsed_time(end) / iters)
    return {name: statistics.median(t) for name, t in times.items()}


def cases(dtype: torch.dtype) -> list[tuple[str, str, Callable, Callable, bool]]:
    """(op, shape, eager, fused, exact) for every case; exact: the outputs must agree bit for bit."""
    out = []
    cuda = dict(device="cuda")
    for dim in (1024, 4096):
        table = torch.randn(VOCAB, dim, **cuda).to(dtype)
        for batch in (1, 16):
            length = 1500
            ids = torch.randint(0, VOCAB, (batch, length), **cuda)
            for text in (None, torch.randn(batch, length // GROUP, dim, **cuda).to(dtype)):
                op = "group" if text is None else "group+text"
                out.append(
                    (
                        op,
                        f"B={batch} T={length} D={dim}",
                        partial(eager_group, ids, table, GROUP, text),
                        partial(ops.group, ids, table, GROUP, text, backend="extension"),
                        False,
                    )
                )
            u = torch.randn(batch, length // GROUP, GROUP * dim, **cuda).to(dtype)
            out.append(
                (
                    "ungroup",
                    f"B={batch} T={length} D={dim}",
                    partial(eager_ungroup, u, ids, table, GROUP),
                    partial(ops.ungroup, u, ids, table, GROUP, backend="extension"),
                    True,
                )
            )
    return out


def sample_cases() -> list[tuple[str, str, Callable, Callable]]:
    out = []
    generator = torch.Generator(device="cuda").manual_seed(0)
    for batch in (1, 16, 64):
        logits = torch.randn(batch, VOCAB, device="cuda") * 4
        history = torch.randint(0, VOCAB, (batch, 300), device="cuda")
        uniforms = torch.rand(batch, 2, device="cuda", generator=generator)
        for name, settings in SAMPLE_SETTINGS.items():
            eager = partial(eager_sample, logits, history, generator, **settings)
            fused = partial(ops.sample, logits, history, uniforms, **settings, backend="extension")
            out.append((f"sample {name}", f"B={batch} V={VOCAB} H=300", eager, fused))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--json", default="bench-results/fused_ops_cuda.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark times the CUDA kernels")
    if not ops.extension_has_cuda():
        raise SystemExit(f"the extension has no CUDA kernels (error: {ops.extension_error()})")
    torch.manual_seed(0)
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for op, shape, eager, fused, exact in cases(dtype):
            want, got = eager(), fused()
            if exact:
                torch.testing.assert_close(got, want, rtol=0, atol=0)
            else:
                tol = 1e-5 if dtype == torch.float32 else 2**-7
                torch.testing.assert_close(got.float(), want.float(), rtol=tol, atol=tol)
            times = median_ms({"eager": eager, "fused": fused}, args.repeats, args.iters)
            rows.append(dict(op=op, dtype=str(dtype).removeprefix("torch."), shape=shape, **times))
    for op, shape, eager, fused in sample_cases():
        if op == "sample greedy+penalty":
            assert torch.equal(eager(), fused()), "greedy sampling disagrees with eager"
        times = median_ms({"eager": eager, "fused": fused}, args.repeats, args.iters)
        rows.append(dict(op=op, dtype="float32", shape=shape, **times))
    print(f"{'op':<24} {'dtype':<9} {'shape':<24} {'eager ms':>10} {'fused ms':>10} {'ratio':>7}")
    for row in rows:
        row["ratio"] = row["eager"] / row["fused"]
        print(
            f"{row['op']:<24} {row['dtype']:<9} {row['shape']:<24} {row['eager']:>10.4f} "
            f"{row['fused']:>10.4f} {row['ratio']:>6.2f}x"
        )
    result = dict(
        device=torch.cuda.get_device_name(),
        torch=torch.__version__,
        cuda=torch.version.cuda,
        repeats=args.repeats,
        iters=args.iters,
        results=rows,
    )
    write_json(args.json, result)


if __name__ == "__main__":
    main()
