"""Smoke test of tools/bench/precision.py: one round of one stage prints both precisions and the ratio."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "bench" / "precision.py"


def test_one_round_writes_the_ratio(tmp_path):
    out = tmp_path / "precision.json"
    args = ["--stages", "tokenizer", "--rounds", "1", "--steps", "1", "--threads", "1", "--json", str(out)]
    run = subprocess.run(
        [sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "tokenizer" in run.stdout and "x" in run.stdout
    report = json.loads(out.read_text())
    (row,) = report["stages"]
    assert set(row["median_step_s"]) == {"32-true", "bf16-mixed"} and row["ratio_fp32_over_bf16"] > 0
    losses = row["last_loss"]
    assert abs(losses["32-true"] - losses["bf16-mixed"]) < 0.1 * abs(losses["32-true"])


def test_an_unknown_stage_is_refused():
    run = subprocess.run(
        [sys.executable, str(TOOL), "--stages", "text_lm"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert run.returncode == 2 and "unknown stage(s) ['text_lm']" in run.stderr
