"""Smoke test of tools/bench/hift_step.py: a one-round run prints both variants and writes the ratio."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "bench" / "hift_step.py"


def test_one_round_writes_the_ratio(tmp_path):
    out = tmp_path / "hift_step.json"
    args = ["--rounds", "1", "--steps", "1", "--threads", "1", "--json", str(out)]
    run = subprocess.run(
        [sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "channels-last speed-up" in run.stdout
    report = json.loads(out.read_text())
    assert set(report["median_step_s"]) == {"channels_last", "nchw"}
    assert len(report["round_ratios"]) == 1 and report["speedup_nchw_over_channels_last"] > 0
