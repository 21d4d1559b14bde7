"""What every benchmark of this folder does with its result: write it as JSON and say where."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(path: str, result: dict) -> None:
    """Write the benchmark ``result`` to ``path`` (folders made as needed) and say so."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
