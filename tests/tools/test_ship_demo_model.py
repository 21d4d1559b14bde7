"""tools/ship_demo_model.py: the sections it writes into the shipped model card."""

from __future__ import annotations

import json


def test_the_card_gets_the_frame_rate_table_of_the_committed_experiment(load_tool):
    with load_tool("tools/ship_demo_model.py") as ship:
        results = json.loads(ship.FRAME_RATE.read_text(encoding="utf-8"))
        section = ship.frame_rate(results)
    assert section.lstrip().startswith("## The 5 Hz claim")
    assert "docs/experiments/frame_rate.md" in section
    for name in ("k5", "k1_samples", "k1_budget"):
        row = next(line for line in section.splitlines() if line.startswith(f"| {name} |"))
        assert f"{100 * results[name]['s2t']:.1f} %" in row
    assert f"training time {results['timing']['ratio']:.2f}x" in section
    assert "| official_8b | 1 |" in section
