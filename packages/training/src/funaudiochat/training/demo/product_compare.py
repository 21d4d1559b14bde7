"""How far a run's trained products are from those saved by another run: is the recipe reproducible?

    python tools/train_demo.py --out runs/repro --compare-products artifacts/demo_build

``compare_products`` walks the products (``DemoStage.products``) of every stage finished in a run and saved
in a folder (``products.save_products``), file by file: a safetensors file is compared tensor by tensor
(same names, shapes and dtypes; the largest absolute difference and the relative L2 difference of all
tensors together), any other file byte for byte. A stage is ``"identical"`` when every file is the same
bytes, ``"close"`` when the weights differ but no tensor's relative L2 difference exceeds
``CLOSE_RELATIVE``, else ``"different"``; a file only one side has makes it ``"different"`` too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from .products import DONE_FILE, RESTORED_FILE, product_paths

CLOSE_RELATIVE = 1e-3
VERDICTS = ("identical", "close", "different")  # from best to worst


def product_files(folder: Path, patterns) -> dict[str, Path]:
    """Every file of the products of a stage folder (folders walked), keyed by its path in the folder."""
    files: dict[str, Path] = {}
    for path in product_paths(folder, patterns):
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file() and file.name not in (DONE_FILE, RESTORED_FILE):
                files[file.relative_to(folder).as_posix()] = file
    return files


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compare_weights(ours: Path, theirs: Path) -> dict[str, Any]:
    """Two safetensors files tensor by tensor: ``{"tensors", "max_abs", "relative_l2", "worst"}`` (the
    tensor with the largest relative L2 difference), or ``{"mismatch": why}`` when their names, shapes or
    dtypes differ."""
    from safetensors.torch import load_file

    a, b = load_file(ours), load_file(theirs)
    if a.keys() != b.keys():
        only = sorted(a.keys() ^ b.keys())
        return {"mismatch": f"tensor names differ: {only[:5]}{' ...' if len(only) > 5 else ''}"}
    max_abs, diff_sq, norm_sq, worst = 0.0, 0.0, 0.0, ("", 0.0)
    for name in sorted(a):
        x, y = a[name], b[name]
        if x.shape != y.shape or x.dtype != y.dtype:
            return {"mismatch": f"{name}: {tuple(x.shape)} {x.dtype} against {tuple(y.shape)} {y.dtype}"}
        x, y = x.double().flatten(), y.double().flatten()
        delta = x - y
        size = y.norm().item()
        max_abs = max(max_abs, delta.abs().max().item() if delta.numel() else 0.0)
        diff_sq += delta.pow(2).sum().item()
        norm_sq += size**2
        relative = delta.norm().item() / size if size > 0 else float(delta.norm().item() > 0)
        if relative > worst[1]:
            worst = (name, relative)
    total = (diff_sq**0.5) / (norm_sq**0.5) if norm_sq > 0 else float(diff_sq > 0)
    return {
        "tensors": len(a),
        "max_abs": max_abs,
        "relative_l2": total,
        "worst": {"tensor": worst[0], "relative_l2": worst[1]},
    }


def compare_stage(ours: Path, theirs: Path, patterns) -> dict[str, Any]:
    """One stage's products in a run folder (``ours``) against those saved in ``theirs``: ``{"verdict",
    "files": {path: {"same": bool, ...}}}``, the verdict one of ``"identical"``, ``"close"``,
    ``"different"``."""
    mine, saved = product_files(ours, patterns), product_files(theirs, patterns)
    files: dict[str, dict[str, Any]] = {}
    verdicts = ["identical"]
    for name in sorted(mine.keys() | saved.keys()):
        if name not in mine or name not in saved:
            files[name] = {"same": False, "missing_in": "run" if name not in mine else "saved"}
            verdicts.append("different")
            continue
        entry: dict[str, Any] = {"same": _digest(mine[name]) == _digest(saved[name])}
        if not entry["same"] and name.endswith(".safetensors"):
            entry.update(compare_weights(mine[name], saved[name]))
            close = "mismatch" not in entry and entry["worst"]["relative_l2"] <= CLOSE_RELATIVE
            verdicts.append("close" if close else "different")
        elif not entry["same"]:
            verdicts.append("different")
        files[name] = entry
    verdict = max(verdicts, key=VERDICTS.index)
    return {"verdict": verdict, "files": files}


def compare_products(build, folder: Path) -> dict[str, dict[str, Any]]:
    """``compare_stage`` for every stage of ``build`` (a ``DemoBuild``) that is finished there, has
    products and is saved in ``folder``; a stage whose products in the run were themselves restored from
    elsewhere is left out (comparing a copy proves nothing)."""
    folder = Path(folder)
    outcome: dict[str, dict[str, Any]] = {}
    for name, stage in build.stages.items():
        saved = folder / name
        if not stage.products or not build.done(name) or not (saved / DONE_FILE).is_file():
            continue
        if (build.folder(name) / RESTORED_FILE).is_file():
            continue
        outcome[name] = compare_stage(build.folder(name), saved, stage.products)
    return outcome
