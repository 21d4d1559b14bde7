"""tools/ship_demo_model.py: the sections it writes into the shipped model card."""

from __future__ import annotations

import pytest


def test_the_card_gets_the_frame_rate_experiments_table(load_tool):
    arm = {
        "group_size": 5,
        "steps": {"pre_alignment_steps": 400},
        "grouped_seconds": 5000.0,
        "recipe_seconds": 12000.0,
        "peak_rss_mb": 3000.0,
        "s2t": 0.645,
        "s2s": 0.405,
    }
    part = {"llm": 1.0, "srh": 2.0, "audio_encoder": 3.0, "total": 6.0}
    results = {
        "limit": 50,
        "arms": {"k5": arm, "k1_samples": {**arm, "group_size": 1, "s2t": 0.5}, "k1_budget": arm},
        "timing": {"ratio": 1.2, "k1_seconds_per_step": 1.2, "k5_seconds_per_step": 1.0, "steps": 12},
        "flops_per_speech_second": {f"k{k}": {"demo": part, "official_8b": part} for k in (5, 1)},
    }
    with load_tool("tools/ship_demo_model.py") as ship:
        section = ship.frame_rate(results)
    assert section.lstrip().startswith("## The 5 Hz claim")
    assert "frame_rate.py --run <the 5 Hz run> --limit 50" in section
    assert "docs/experiments/frame_rate.md" in section
    k1 = next(line for line in section.splitlines() if line.startswith("| k1_samples |"))
    assert "| 50.0 % | 40.5 % |" in k1
    assert "same batches: 1.20x" in section


def test_a_clock_note_goes_under_the_time_table(load_tool):
    card = "## Recipe\n| stage | seconds |\n|---|---|\n| `dpo` | 12 |\n\nSettings: `{}`\n\n## Data\n"
    with load_tool("tools/ship_demo_model.py") as ship:
        noted = ship.with_clock_note(card, "These clocks ran beside other work.\n")
        assert noted.index("| `dpo` | 12 |") < noted.index("These clocks") < noted.index("Settings: `")
        assert noted.count("These clocks") == 1
        with pytest.raises(SystemExit, match="no 'Settings:' line"):
            ship.with_clock_note("## Recipe\n", "a note")
