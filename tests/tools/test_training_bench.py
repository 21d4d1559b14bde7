"""Smoke test of tools/bench/training.py: its quickest mode runs, prints the table and writes one JSON row per
(stage, kernels), with the extension/reference ratio where the stage uses the fused DRSR ops."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "bench" / "training.py"
# one stage of each kind (all seven take a minute or more): a speech-LLM stage with and without the kernels,
# DPO (pairs of batches, a frozen reference) and HiFT (manual optimisation; n/a: it uses no DRSR ops)
STAGES = ("sft", "dpo", "vocoder_hift")


def test_quick_bench_writes_a_row_per_stage_and_kernels(tmp_path):
    out = tmp_path / "training.json"
    run = subprocess.run(
        [sys.executable, str(TOOL), "--quick", "--stages", ",".join(STAGES), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {(r["stage"], r["kernels"]): r for r in report["rows"]}
    expected = {
        ("sft", "reference"),
        ("sft", "extension"),
        ("dpo", "reference"),
        ("dpo", "extension"),
        ("vocoder_hift", "n/a"),
    }
    assert set(rows) == expected
    for (stage, kernels), row in rows.items():
        assert "error" not in row, row
        assert row["samples_per_s"] > 0 and row["step_s"] > 0 and len(row["step_s_all"]) == row["steps"] == 2
        assert row["peak_rss_growth_mb"] >= 0 and row["rss_peak_mb"] > 0
        assert row["torch_live_tensors_mb"] > 0
        if kernels == "n/a":
            assert row["ratio_ext_over_ref"] is None and row["drsr_op_calls_per_step"] == 0
        else:
            assert row["drsr_op_calls_per_step"] > 0 and row["drsr_ops_forward_ms_per_step"] > 0
            assert row["drsr_reference_calls_per_step"] == (
                row["drsr_op_calls_per_step"] if kernels == "reference" else 0
            )
        if kernels == "extension":
            base = rows[(stage, "reference")]
            assert row["ratio_of_medians_ext_over_ref"] == row["samples_per_s"] / base["samples_per_s"]
            paired = sorted(r / e for r, e in zip(base["step_s_all"], row["step_s_all"], strict=True))
            assert row["ratio_ext_over_ref"] == pytest.approx(sum(paired) / 2)  # median of 2 paired ratios
    assert rows[("dpo", "extension")]["batch"] == 1 and rows[("dpo", "extension")]["unit"] == "pair"
    for stage in STAGES:
        assert stage in run.stdout
