"""tools/experiments/srh_probe.py on a tiny random model and three spoken replies: every SRH target is
counted once in the time bins, the delay's BOS bin comes first, and both ablations reach the head (a
random head depends on both of its inputs, so taking either away changes its loss)."""

import json

import pytest
import torch

CODES = 60  # the codes of each spoken reply of the ``spoken_replies`` fixture (tests/tools/conftest.py)


@pytest.fixture(scope="module")
def probe_module(load_tool):
    with load_tool("tools/experiments/srh_probe.py") as module:
        yield module


@pytest.fixture
def setup(spoken_replies):
    return spoken_replies


def test_probe_counts_every_target_and_both_ablations_reach_the_head(probe_module, setup, tmp_path, capsys):
    folder, conversations = setup
    out = tmp_path / "probe.json"
    threads = torch.get_num_threads()
    assert (
        probe_module.main(["--model", str(folder), "--conversations", str(conversations), "--out", str(out)])
        == 0
    )
    assert torch.get_num_threads() == threads, "main must give torch its thread count back"
    result = json.loads(out.read_text())
    assert result["rows"] == 3  # the row without assistant speech is skipped
    # per reply: 10 BOS + 60 codes, and the EOS group at <|audio_eos|> (5 targets)
    assert sum(b["codes"] for b in result["bins"]) == 3 * (10 + CODES + 5)
    assert [b["seconds"] for b in result["bins"]] == [round(0.4 * i, 2) for i in range(len(result["bins"]))]
    assert all(0.0 <= b["accuracy"] <= 1.0 and b["loss"] >= 0.0 for b in result["bins"])
    content = result["content_loss"]
    assert set(content) == {"intact", "no_previous_tokens", "other_conditioning"}
    assert content["no_previous_tokens"] != pytest.approx(content["intact"], abs=1e-6)
    assert content["other_conditioning"] != pytest.approx(content["intact"], abs=1e-6)
    assert "content loss, no previous tokens" in capsys.readouterr().out


def test_a_file_without_spoken_replies_is_refused(probe_module, setup, tmp_path):
    folder, _ = setup
    empty = tmp_path / "text_only.jsonl"
    empty.write_text(json.dumps({"system": "x", "messages": [], "audio": []}) + "\n")
    with pytest.raises(SystemExit, match="no conversation ends with assistant speech"):
        probe_module.main(["--model", str(folder), "--conversations", str(empty)])


@pytest.fixture(scope="module")
def scale_experiment(load_tool):
    with load_tool("tools/experiments/srh_table_scale.py") as module:
        yield module


def test_table_scale_experiment_trains_each_scale_from_the_same_start(scale_experiment, setup, tmp_path):
    experiment = scale_experiment
    folder, conversations = setup
    out = tmp_path / "scale.json"
    threads = torch.get_num_threads()
    argv = ["--model", str(folder), "--train", str(conversations), "--heldout", str(conversations)]
    argv += ["--scales", "1,8", "--steps", "2", "--every", "1", "--batch", "2", "--out", str(out)]
    assert experiment.main(argv) == 0
    assert torch.get_num_threads() == threads
    result = json.loads(out.read_text())
    curves = [result["1.0"], result["8.0"]]
    for curve in curves:
        assert [point["step"] for point in curve] == [0, 1, 2]
        assert all(point["heldout_word_code_loss"] > 0 for point in curve)
    # the same start, but a larger table changes the head's predictions from the first measurement on
    assert curves[0][0]["heldout_word_code_loss"] != pytest.approx(curves[1][0]["heldout_word_code_loss"])
    with pytest.raises(SystemExit):
        experiment.main([*argv[:6], "--scales", "0"])
