"""tools/experiments/text_phrasings.py: the held-out phrasings it asks, its table, and its --model check.
(Its figures come from trained text LLMs: docs/experiments/demo_model/text_phrasings_2026-12-05.json.)"""

import json

import pytest


@pytest.fixture(scope="module")
def experiment(load_tool):
    with load_tool("tools/experiments/text_phrasings.py") as module:
        yield module


def _record(task, split, phrasing, index):
    return {
        "id": f"{task}.{phrasing}.{index}",
        "task": task,
        "question": f"question {index}?",
        "answer": "Seven.",
        "key": ["seven"],
        "tool_call": None,
        "phrasing": phrasing,
        "content": f"c{index}",
        "split": split,
    }


def test_it_asks_the_held_out_phrasings_of_the_question_answering_tasks(experiment, tmp_path):
    records = [
        _record("arithmetic", "heldout_phrasing", "add.what_is", 0),
        _record("arithmetic", "train", "add.bare", 1),
        _record("fact", "heldout_content", "colour.what", 2),
        _record("asr", "heldout_phrasing", "asr_pet.think", 3),
        _record("fact", "heldout_phrasing", "colour.name_colour", 4),
    ]
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    items = experiment.phrasing_items(tmp_path)
    assert [(i.task, i.phrasing) for i in items] == [
        ("arithmetic", "add.what_is"),
        ("fact", "colour.name_colour"),
    ]
    assert items[0].key == ("seven",) and items[0].question == "question 0?"


def test_table_has_a_column_per_model_and_a_row_per_phrasing(experiment):
    score = {"accuracy": 0.5, "se_by_phrasing": 0.25, "per_phrasing": {"fact:a": 1.0, "fact:b": 0.0}}
    lines = experiment.table({"one": score, "two": {**score, "accuracy": 0.75}}).splitlines()
    assert lines[0] == "| phrasing | one | two |"
    assert lines[2] == "| all (± over phrasings) | 50.0 ± 25.0 % | 75.0 ± 25.0 % |"
    assert lines[3:] == ["| fact:a | 100 % | 100 % |", "| fact:b | 0 % | 0 % |"]


def test_a_model_needs_a_name(experiment, tmp_path, capsys):
    with pytest.raises(SystemExit):
        experiment.main(["--run", str(tmp_path), "--model", "folder_without_name"])
    assert "--model wants NAME=FOLDER, got 'folder_without_name'" in capsys.readouterr().err
