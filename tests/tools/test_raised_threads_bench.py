"""tools/bench/raised_threads.py refuses settings it cannot measure (its measurement compiles two models:
run by hand, ``docs/benchmarks.md``)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "bench" / "raised_threads.py"


def test_raising_to_one_thread_is_refused():
    run = subprocess.run(
        [sys.executable, str(TOOL), "--threads", "1"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert run.returncode == 2 and "--threads at least 2" in run.stderr
