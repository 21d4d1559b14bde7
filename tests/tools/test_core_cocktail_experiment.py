"""tools/experiments/core_cocktail.py end to end in its --quick mode (a few steps of every stage on a
handful of questions): it runs, prints the table with every row, and writes the JSON report. The numbers
themselves are not checked here (a few steps teach nothing); docs/experiments/core_cocktail.md has them."""

import json

import pytest
import torch


@pytest.fixture(scope="module")
def experiment(load_tool):
    with load_tool("tools/experiments/core_cocktail.py") as module:
        yield module


def test_quick_run_reports_every_row(experiment, tmp_path, capsys):
    report = tmp_path / "out" / "cc.json"
    threads = torch.get_num_threads()
    assert experiment.main(["--quick", "--json", str(report), "--work", str(tmp_path / "work")]) == 0
    assert torch.get_num_threads() == threads, "main must give torch its thread count back"
    printed = capsys.readouterr().out
    data = json.loads(report.read_text())
    assert data["quick"] and data["seeds"] == [0]
    rows = data["runs"][0]["rows"]
    assert set(rows) == {key for key, _ in experiment.ROWS}
    for key, metrics in rows.items():
        assert set(metrics) == {m for m, _ in experiment.METRICS}, key
        assert all(0.0 <= v <= 1.0 for v in metrics.values()), (key, metrics)
    lines = [line for line in data["table"].splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0][2:] for line in lines[1:]] == [label for _, label in experiment.ROWS]
    assert data["table"] in printed
    assert set(data["runs"][0]["timings_s"]) >= {"data", "M0", "(a) plain", "(b) cc", "(c) no_merge"}


def test_table_shows_the_mean_and_each_seed(experiment):
    runs = [
        {"rows": {"m0": {"text_seen": 1.0, "text_held_out": 0.5}}},
        {"rows": {"m0": {"text_seen": 0.5, "text_held_out": 0.25}}},
    ]
    lines = experiment.table(runs).splitlines()
    assert len(lines) == 3
    assert lines[2] == "| M0: text LM | 75 (100 / 50) | 38 (50 / 25) | – | – |"


def test_answers_compare_normalised_and_the_text_task_is_fixed(experiment):
    assert experiment.normalise("  Seven. ") == experiment.normalise("seven") == "seven"
    assert experiment.normalise("Fifty-six!") == "fifty six"
    pairs = experiment.addition_pairs(100)
    assert len(set(pairs)) == 100 and pairs[:5] == experiment.addition_pairs(5)
    assert ("What is three plus four?", "Seven.") in pairs


def test_bad_settings_are_refused(experiment):
    with pytest.raises(SystemExit, match="stage1-steps"):
        experiment.main(["--quick", "--stage1-steps", "4"])
    with pytest.raises(SystemExit):
        experiment.main(["--seeds", "a"])
