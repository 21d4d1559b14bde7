"""tools/experiments/text_tool_calls.py: the requests it asks, how a reply is scored, its summary and table.
(Its figures come from trained text LLMs: docs/experiments/demo_model/README.md, "Why the tool calls
fail".)"""

import json

import pytest


@pytest.fixture(scope="module")
def experiment(load_tool):
    with load_tool("tools/experiments/text_tool_calls.py") as module:
        yield module


def _request(split, phrasing, index, city="Paris"):
    return {
        "id": f"tool.weather.{index}.{phrasing}",
        "task": "tool",
        "question": f"What is the weather in {city}?",
        "answer": f"Let me check the weather in {city}.",
        "key": [city.lower()],
        "tool_call": {"name": "get_weather", "arguments": {"city": city}},
        "phrasing": phrasing,
        "content": f"weather:{city.lower()}",
        "split": split,
    }


def test_it_asks_every_held_out_request_and_every_nth_training_one(experiment, tmp_path):
    records = [_request("train", "what_is", i) for i in range(7)]
    records += [_request("heldout_phrasing", "like", 7), _request("heldout_content", "what_is", 8)]
    records.append({**_request("train", "what_is", 9), "task": "fact"})  # not a tool request
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    asked = experiment.tool_requests(tmp_path, every=3)
    assert [r["id"].split(".")[2] for r in asked] == ["0", "3", "6", "7", "8"]


def test_a_reply_is_right_only_with_the_one_call_and_its_arguments(experiment):
    request = _request("train", "what_is", 0)
    call = '<tool_call>\n{{"name": "get_weather", "arguments": {{"city": "{}"}}}}\n</tool_call>'
    assert experiment.scored(request, call.format("Paris"))["right"]
    wrong_city = experiment.scored(request, call.format("Chicago"))
    assert (
        wrong_city["format"]
        and not wrong_city["right"]
        and wrong_city["calls"] == [["get_weather", {"city": "Chicago"}]]
    )
    twice = experiment.scored(request, call.format("Paris") + "\n" + call.format("Paris"))
    assert not twice["format"] and not twice["right"]
    assert experiment.scored(request, "It is sunny.") == {"format": False, "right": False, "calls": []}
    garbled = experiment.scored(request, "<tool_call>\n{not json\n</tool_call>")
    assert not garbled["right"] and isinstance(garbled["calls"], str)


def test_summary_and_table(experiment):
    requests = [_request("train", "what_is", 0), _request("train", "what_is", 1)]
    requests.append(_request("heldout_phrasing", "like", 2))
    outcomes = [{"format": True, "right": True}, {"format": True, "right": False}]
    outcomes.append({"format": False, "right": False})
    score = experiment.summary(requests, outcomes)
    assert score["per_split"]["train"] == {"right": 0.5, "format": 1.0, "n": 2}
    assert "heldout_content" not in score["per_split"]
    assert score["per_phrasing"] == {"heldout_phrasing:like": 0.0, "train:what_is": 0.5}
    lines = experiment.table({"a": score}).splitlines()
    assert lines[0] == "| split | a |"
    assert lines[2:] == [
        "| train | 50 % (100 %, n=2) |",
        "| heldout_phrasing | 0 % (0 %, n=1) |",
        "| heldout_content | - |",
    ]


def test_bad_arguments_are_named(experiment, tmp_path, capsys):
    with pytest.raises(SystemExit):
        experiment.main(["--run", str(tmp_path), "--model", "no_name"])
    assert "--model wants NAME=FOLDER, got 'no_name'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        experiment.main(["--run", str(tmp_path), "--model", "a=b", "--every", "0"])
    assert "--every wants a whole number >= 1, got 0" in capsys.readouterr().err
