"""funaudiochat.training.demo: number words, the pairs of every task (right answers, keys in the answers,
tool calls that fit the schemas), the held-out splits, and the files of ``tools/make_demo_corpus.py``
(read back by the synthesis tool's reader, the same bytes for the same seed)."""

from __future__ import annotations

import json
import re
import runpy
import sys
from collections import Counter
from pathlib import Path

import pytest
from funaudiochat.training.demo import (
    SPLITS,
    TASKS,
    TOOLS,
    all_families,
    build_corpus,
    contains_key,
    held_out,
    main,
    number_to_words,
    numbers_in,
    words_to_number,
)

ROOT = Path(__file__).resolve().parents[3]
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
RESULTS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b}


@pytest.fixture(scope="module")
def corpus():
    return build_corpus(seed=0)


@pytest.mark.parametrize(
    ("number", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (20, "twenty"),
        (40, "forty"),
        (100, "one hundred"),
        (115, "one hundred fifteen"),
        (400, "four hundred"),
        (999, "nine hundred ninety nine"),
    ],
)
def test_number_words(number, words):
    assert number_to_words(number) == words
    assert words_to_number(words) == number


def test_number_words_read_back_for_every_number():
    for number in range(1000):
        words = number_to_words(number)
        assert words_to_number(words) == number
        assert numbers_in(f"It is {words}, then one.") == [number, 1]


@pytest.mark.parametrize("number", [-1, 1000, 12345])
def test_number_words_outside_range_is_a_value_error(number):
    with pytest.raises(ValueError, match=r"outside 0\.\.999"):
        number_to_words(number)


@pytest.mark.parametrize("value", [True, 1.5, "7"])
def test_number_words_of_a_non_int_is_a_type_error(value):
    with pytest.raises(TypeError):
        number_to_words(value)


@pytest.mark.parametrize("text", ["", "twenty-one", "hundred", "one two", "seven.", "ten zero", "a dozen"])
def test_words_to_number_rejects_what_is_not_one_number(text):
    with pytest.raises(ValueError, match="not a number"):
        words_to_number(text)


def test_numbers_in_reads_runs_and_stops_at_punctuation():
    assert numbers_in("Twenty one plus three is twenty four.") == [21, 3, 24]
    assert numbers_in("Five, four, three.") == [5, 4, 3]
    assert numbers_in("One hundred fifty six and ten") == [156, 10]


def test_every_task_has_pairs_of_every_split_in_several_phrasings(corpus):
    for task in TASKS:
        pairs = [p for p in corpus if p.task == task]
        assert {p.split for p in pairs} == set(SPLITS), task
        assert len({p.phrasing for p in pairs if p.split == "train"}) >= 10, task
    assert 2000 <= len(corpus) <= 6000
    assert 200 <= sum(p.task == "asr" for p in corpus) <= 600


def test_ids_are_unique_file_name_safe_and_sorted(corpus):
    ids = [p.id for p in corpus]
    assert len(set(ids)) == len(ids)
    assert all(SAFE_ID.match(i) for i in ids)
    assert ids == sorted(ids)


def test_arithmetic_answers_are_right(corpus):
    arithmetic = [p for p in corpus if p.task == "arithmetic"]
    assert {p.content.split(":")[0] for p in arithmetic} == set(RESULTS)
    for pair in arithmetic:
        operation, a, b = pair.content.split(":")
        a, b = int(a), int(b)
        result = RESULTS[operation](a, b)
        assert 0 <= a <= 20 and 0 <= b <= 20 and result >= 0, pair
        assert sorted(numbers_in(pair.question)) == sorted([a, b]), pair
        assert numbers_in(pair.answer) in ([result], [a, b, result]), pair
        assert pair.key == tuple(number_to_words(result).split()), pair


def test_comparisons_are_right(corpus):
    compare = [p for p in corpus if p.task == "compare"]
    assert {p.content.split(":")[0] for p in compare} == {"more", "less", "bigger", "smaller"}
    for pair in compare:
        kind, a, b = pair.content.split(":")
        a, b = int(a), int(b)
        assert numbers_in(pair.question)[:2] == [a, b] and a != b, pair  # [2] would be "which one"
        expected = {
            "more": "yes" if a > b else "no",
            "less": "yes" if a < b else "no",
            "bigger": number_to_words(max(a, b)),
            "smaller": number_to_words(min(a, b)),
        }[kind]
        assert pair.key == tuple(expected.split()), pair
    verdicts = Counter(p.key for p in compare if p.content.startswith(("more:", "less:")))
    assert verdicts[("yes",)] > 100 and verdicts[("no",)] > 100


def test_fact_and_instruction_answers(corpus):
    by_content = {p.content: p for p in corpus}
    assert by_content["colour:sky"].key == ("blue",)
    assert by_content["sound:cow"].key == ("moo",)
    assert by_content["opposite:hot"].key == ("cold",)
    assert by_content["day_after:monday"].key == ("tuesday",)
    assert by_content["month_before:may"].key == ("april",)
    assert by_content["say:hello"].answer == "Hello!"
    assert by_content["spell:cat"].answer == "C, A, T."
    for pair in corpus:
        if pair.content.startswith(("count_up:", "count_down:")):
            start, end = map(int, pair.content.split(":")[1:])
            step = 1 if end > start else -1
            assert numbers_in(pair.answer) == list(range(start, end + step, step)), pair


def test_keys_are_lower_case_words_held_by_the_answers(corpus):
    for pair in corpus:
        assert pair.key and all(re.fullmatch(r"[a-z0-9']+", w) for w in pair.key), pair
        assert contains_key(pair.answer, pair.key), pair
    assert not contains_key("Seven plus three is eleven.", ("ten",))
    assert not contains_key("Ten nine.", ("nine", "ten"))  # in order
    assert not contains_key("anything", ())


def test_questions_and_answers_are_sentences(corpus):
    for pair in corpus:
        for text in (pair.question, pair.answer):
            assert text[0].isupper() and text[-1] in ".?!" and "{" not in text and "  " not in text, pair


def test_tool_pairs_call_the_functions_of_the_schemas(corpus):
    schemas = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
    assert all(tool["type"] == "function" and tool["function"]["description"] for tool in TOOLS)
    assert set(schemas) == {"set_timer", "get_weather"}
    types = {"integer": int, "string": str}
    tools = [p for p in corpus if p.task == "tool"]
    assert {p.tool_call["name"] for p in tools} == set(schemas)
    for pair in tools:
        schema = schemas[pair.tool_call["name"]]
        arguments = pair.tool_call["arguments"]
        assert set(arguments) == set(schema["required"]) == set(schema["properties"]), pair
        for name, value in arguments.items():
            assert type(value) is types[schema["properties"][name]["type"]], pair
        if pair.tool_call["name"] == "set_timer":
            assert numbers_in(pair.question) == [arguments["minutes"]] and arguments["minutes"] >= 1, pair
        else:
            assert arguments["city"] in pair.question and arguments["city"] in pair.answer, pair
    assert all(p.tool_call is None for p in corpus if p.task != "tool")


def test_asr_pairs_answer_with_the_spoken_sentence(corpus):
    for pair in (p for p in corpus if p.task == "asr"):
        assert pair.answer == pair.question and len(pair.key) >= 3, pair
        assert "transcribe" not in pair.question.lower(), pair


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_held_out_phrasings_and_contents_never_reach_train(seed):
    pairs = build_corpus(seed)
    for family in all_families():
        phrasings, contents = held_out(family, seed)
        assert len(phrasings) >= 1 and len(contents) >= 1
        assert len(phrasings) <= 0.3 * len(family.templates) and len(contents) <= 0.2 * len(family.contents)
        mine = [p for p in pairs if p.phrasing.startswith(f"{family.name}.")]
        for pair in mine:
            expected = (
                "heldout_content"
                if pair.content in contents
                else "heldout_phrasing"
                if pair.phrasing in phrasings
                else "train"
            )
            assert pair.split == expected, pair
    train = [p for p in pairs if p.split == "train"]
    held_phrasings = {p.phrasing for p in pairs if p.split == "heldout_phrasing"}
    held_contents = {p.content for p in pairs if p.split == "heldout_content"}
    assert not held_phrasings & {p.phrasing for p in train}
    assert not held_contents & {p.content for p in pairs if p.split != "heldout_content"}


def test_the_seed_changes_the_splits_only():
    zero, one = build_corpus(0), build_corpus(1)
    assert [(p.id, p.question, p.answer) for p in zero] == [(p.id, p.question, p.answer) for p in one]
    assert [p.split for p in zero] != [p.split for p in one]
    assert build_corpus(0) == zero


def test_main_writes_files_the_synthesis_reader_accepts(tmp_path, capsys):
    from funaudiochat.training.data.synth import read_pairs

    out = tmp_path / "corpus"
    assert main(["--out", str(out), "--seed", "0"]) == 0
    assert "pairs (train" in capsys.readouterr().out
    pairs = build_corpus(0)
    records = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
    assert records == [p.to_json() for p in pairs]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["pairs"] == len(pairs) and stats["seed"] == 0
    for split in SPLITS:
        spoken = read_pairs(out / f"pairs_{split}.jsonl")
        tools = read_pairs(out / f"tools_{split}.jsonl")
        expected = [p for p in pairs if p.split == split]
        assert [q.id for q in spoken] == [p.id for p in expected if p.task != "tool"]
        assert [q.id for q in tools] == [p.id for p in expected if p.task == "tool"]
        assert (
            len(spoken) + len(tools)
            == stats["splits"][split]
            == sum(t[split] for t in stats["tasks"].values())
        )
        calls = [
            json.loads(line)["tool_call"] for line in (out / f"tools_{split}.jsonl").read_text().splitlines()
        ]
        assert calls == [p.tool_call for p in expected if p.task == "tool"]
    assert json.loads((out / "tools.json").read_text()) == TOOLS


def test_the_same_seed_gives_the_same_bytes_and_the_cli_writes_every_file(tmp_path, monkeypatch):
    tool = ROOT / "tools" / "make_demo_corpus.py"
    monkeypatch.setattr(sys, "argv", [str(tool), "--out", str(tmp_path / "cli"), "--seed", "3"])
    with pytest.raises(SystemExit) as exit_:  # in process: a subprocess would spend seconds importing torch
        runpy.run_path(str(tool), run_name="__main__")
    assert exit_.value.code == 0
    assert main(["--out", str(tmp_path / "again"), "--seed", "3"]) == 0
    assert main(["--out", str(tmp_path / "other"), "--seed", "4"]) == 0
    names = sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert names == sorted(
        ["corpus.jsonl", "tools.json", "stats.json"]
        + [f"{kind}_{split}.jsonl" for kind in ("pairs", "tools") for split in SPLITS]
    )
    for name in names:
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    assert (tmp_path / "cli" / "pairs_train.jsonl").read_bytes() != (
        tmp_path / "other" / "pairs_train.jsonl"
    ).read_bytes()


def test_the_text_llm_learns_tool_calls_and_copying_only_when_asked():
    from funaudiochat.drsr.prompts import ASR_INSTRUCTION, DEFAULT_S2T_PROMPT, function_calling_prompt
    from funaudiochat.training.demo.corpus import build_corpus
    from funaudiochat.training.demo.text_stages import QA_TASKS, text_lm_pairs
    from funaudiochat.training.demo.tool_calls import TOOLS

    plain = text_lm_pairs(0, 2, TOOLS)
    assert {r["task"] for r in plain} == set(QA_TASKS) and all("system" not in r for r in plain)
    skilled = text_lm_pairs(0, 2, TOOLS, skills=True)
    assert [r for r in skilled if r["task"] in QA_TASKS] == plain
    calls = [r for r in skilled if r["task"] == "tool"]
    copies = [r for r in skilled if r["task"] == "asr"]
    assert calls and copies
    for record in calls:
        assert record["system"] == function_calling_prompt(TOOLS) != DEFAULT_S2T_PROMPT
        body = json.loads(record["answer"].removeprefix("<tool_call>\n").removesuffix("\n</tool_call>"))
        assert body["name"] in {t["function"]["name"] for t in TOOLS}
    for record in copies:
        assert record["question"] == f"{record['answer']} {ASR_INSTRUCTION}" and "system" not in record
    # no held-out phrasing is learnt: every question is that of a training-split pair of its content
    held_out = {
        (p.content, p.question) for p in build_corpus(0) if p.split == "heldout_phrasing" and p.task == "tool"
    }
    assert held_out and not held_out & {(r["content"], r["question"]) for r in calls}


def test_copy_pairs_are_spliced_training_sentences_copied_under_the_asr_instruction():
    from funaudiochat.drsr.prompts import ASR_INSTRUCTION
    from funaudiochat.training.demo.corpus import build_corpus
    from funaudiochat.training.demo.text_stages import text_lm_pairs
    from funaudiochat.training.demo.tool_calls import TOOLS

    skilled = text_lm_pairs(0, 2, TOOLS, skills=True)
    copied = text_lm_pairs(0, 2, TOOLS, skills=True, copies=50)
    assert copied[: len(skilled)] == skilled and len(copied) == len(skilled) + 50
    copies = copied[len(skilled) :]
    assert {r["task"] for r in copies} == {"copy"}
    assert all(r["question"] == f"{r['answer']} {ASR_INSTRUCTION}" for r in copies)
    assert len({r["answer"] for r in copies}) > 45  # new sentences, not a few repeated
    train_words = {
        w.strip(".,?!").lower() for p in build_corpus(0) if p.split == "train" for w in p.question.split()
    }
    train_words |= {
        w.strip(".,?!").lower() for p in build_corpus(0) if p.split == "train" for w in p.answer.split()
    }
    assert all(w.strip(".,?!").lower() in train_words for r in copies for w in r["answer"].split())
    assert copied == text_lm_pairs(0, 2, TOOLS, skills=True, copies=50)  # seeded
    assert text_lm_pairs(0, 2, TOOLS, skills=False, copies=50) == text_lm_pairs(0, 2, TOOLS)


def test_tool_repeats_teach_every_tool_content_in_every_training_phrasing():
    from collections import Counter

    from funaudiochat.drsr.prompts import format_tool_call, function_calling_prompt
    from funaudiochat.training.demo.corpus import build_corpus
    from funaudiochat.training.demo.corpus import held_out as held_out_of
    from funaudiochat.training.demo.text_stages import text_lm_pairs
    from funaudiochat.training.demo.tool_calls import TOOLS, tool_families

    skilled = text_lm_pairs(0, 2, TOOLS, skills=True)
    repeated = text_lm_pairs(0, 2, TOOLS, skills=True, tool_repeats=3)
    assert repeated[: len(skilled)] == skilled
    extra = repeated[len(skilled) :]
    assert {r["task"] for r in extra} == {"tool"}
    assert all(r["system"] == function_calling_prompt(TOOLS) for r in extra)
    held_out = {(p.content, p.question) for p in build_corpus(0) if p.split == "heldout_phrasing"}
    trained = Counter((r["content"], r["question"]) for r in extra)
    assert not held_out & set(trained), "never a held-out phrasing"
    assert set(trained.values()) == {3}, "each pair that many times"
    contents = {c.id for family in tool_families() for c in family.contents}
    assert {content for content, _ in trained} == contents, "held-out contents too, as every fact"
    # each content in every phrasing its family keeps for training (far more than the knowledge pairs' 2)
    for family in tool_families():
        kept = len(family.templates) - len(held_out_of(family, 0)[0])
        phrasings = Counter(content for content, _ in trained if content.startswith(family.name))
        assert set(phrasings.values()) == {kept} and kept > 2
    for record in extra:  # the answer is the content's own call (the training pairs' tool_call)
        (family,) = [f for f in tool_families() if record["content"].startswith(f.name)]
        (content,) = [c for c in family.contents if c.id == record["content"]]
        assert record["answer"] == format_tool_call(content.tool_call["name"], content.tool_call["arguments"])
    assert text_lm_pairs(0, 2, TOOLS, tool_repeats=3) == text_lm_pairs(0, 2, TOOLS), "skills only"
