"""Smoke test of tools/bench/srh_loss.py: a short run prints the table and writes the JSON, and both ways of
computing the speech loss give the same value."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "bench" / "srh_loss.py"


def test_short_run_writes_the_ratio_and_equal_losses(tmp_path):
    out = tmp_path / "srh.json"
    args = ["--seconds", "2", "--prompt", "6", "--batch", "1", "--repeats", "1", "--json", str(out)]
    run = subprocess.run(
        [sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "speed-up of logits at targets only" in run.stdout
    report = json.loads(out.read_text())
    assert report["ratio"] > 0 and set(report["seconds_per_step"]) == {"selected", "full"}
    losses = report["speech_loss"]
    assert abs(losses["selected"] - losses["full"]) < 1e-4 * abs(losses["full"])
