"""Draw training curves from Lightning's CSV logs (``trainer.logger: [csv]``) to a PNG.

    python tools/plot_metrics.py runs/vocoder_hift/logs/version_0/metrics.csv [more.csv ...] \\
        --out curves.png [--metrics train/loss val/loss] [--smooth 10]

Every column whose name contains "loss" is drawn against ``step`` unless ``--metrics`` names the columns;
one panel per metric, one line per CSV file (labelled by its run folder). ``--smooth N`` adds a running mean
over N logged points. Rows without a value for a metric (other metrics logged at other steps) are skipped.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    """``metrics.csv`` -> metric name -> ``[(step, value), ...]`` in file order."""
    if not path.is_file():
        raise ValueError(f"{path}: metrics file not found")
    series: dict[str, list[tuple[int, float]]] = {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "step" not in reader.fieldnames:
            raise ValueError(f"{path}: not a Lightning CSV log (no 'step' column)")
        for row in reader:
            step = row.get("step")
            if not step:
                continue
            for name, value in row.items():
                if name in ("step", "epoch") or value in (None, ""):
                    continue
                try:
                    series.setdefault(name, []).append((int(float(step)), float(value)))
                except ValueError as err:
                    raise ValueError(f"{path}: column {name!r} has a non-number {value!r}") from err
    return series


def running_mean(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot(files: list[Path], out: Path, metrics: list[str] | None = None, smooth: int = 0) -> list[str]:
    """Draw the curves; returns the metric names drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {f: read_metrics(f) for f in files}
    names = metrics or sorted({m for series in runs.values() for m in series if "loss" in m})
    missing = [m for m in names if not any(m in series for series in runs.values())]
    if not names or missing:
        known = sorted({m for series in runs.values() for m in series})
        raise ValueError(f"no such metrics {missing or names} in the logs; logged: {known}")
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 2.6 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        for path, series in runs.items():
            if name not in series:
                continue
            steps, values = zip(*series[name], strict=True)
            label = path.parent.name if path.parent.name.startswith("version_") else path.stem
            label = (
                f"{path.parent.parent.parent.name}/{label}"
                if path.parent.name.startswith("version_")
                else label
            )
            ax.plot(steps, values, alpha=0.35 if smooth > 1 else 1.0, label=label)
            if smooth > 1:
                ax.plot(steps, running_mean(list(values), smooth), label=f"{label} (mean of {smooth})")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.legend(fontsize="small")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="+", type=Path, help="Lightning metrics.csv files")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--metrics", nargs="*", help="columns to draw (default: every *loss* column)")
    parser.add_argument("--smooth", type=int, default=0, help="running-mean window in logged points")
    args = parser.parse_args(argv)
    try:
        names = plot(args.csv, args.out, args.metrics, args.smooth)
    except ValueError as err:
        print(f"plot_metrics: error: {err}", file=sys.stderr)
        return 2
    print(f"{args.out}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
