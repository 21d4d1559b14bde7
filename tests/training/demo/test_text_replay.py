"""Core-Cocktail's text replay (``cocktail_text_pairs``): the text LLM's own pairs, in its batches."""

import json
from types import SimpleNamespace

import pytest
from funaudiochat.drsr.prompts import DEFAULT_S2T_PROMPT
from funaudiochat.training.demo.context import DemoSettings
from funaudiochat.training.demo.corpus import build_corpus, knowledge_pairs
from funaudiochat.training.demo.finetune_stages import cocktail_conversations, replayed_text
from funaudiochat.training.demo.text_stages import QA_TASKS


def _build(root, **settings):
    return SimpleNamespace(settings=DemoSettings(**settings), folder=lambda stage: root / stage)


def test_replayed_text_is_a_seeded_draw_of_the_text_llms_pairs_and_never_a_heldout_phrasing(tmp_path):
    build = _build(tmp_path)
    rows = replayed_text(build, 200)
    assert rows == replayed_text(build, 200)  # the same draw each time
    assert replayed_text(_build(tmp_path, seed=1), 200) != rows
    settings = build.settings
    pairs = knowledge_pairs(
        settings.seed, QA_TASKS, settings.knowledge_per_content, settings.text_lm_copy_practice
    )
    known = {(p["question"], p["answer"]) for p in pairs}
    assert {p["task"] for p in pairs} == set(QA_TASKS)
    assert all(not r.audios and r.system == DEFAULT_S2T_PROMPT for r in rows)
    assert all((r.turns[0].content, r.turns[1].content) in known for r in rows)
    assert len({r.turns[0].content for r in rows}) == 200
    heldout = {p.question for p in build_corpus(settings.seed) if p.split == "heldout_phrasing"}
    assert not {r.turns[0].content for r in rows} & heldout
    with pytest.raises(ValueError, match=f"cocktail_text_pairs=100000: the text LLM has {len(pairs)} "):
        replayed_text(build, 100_000)


def test_core_cocktail_conversations_end_with_the_replayed_text(tmp_path):
    from funaudiochat.training.data import read_sharegpt, write_sharegpt
    from funaudiochat.training.data.records import AUDIO_TEMPLATE, Conversation, Turn, UserAudio

    turns = [Turn("user", AUDIO_TEMPLATE), Turn("assistant", "Two.")]
    write_sharegpt(
        tmp_path / "train.jsonl", [Conversation(turns, [UserAudio("/a/q.wav", 25)], DEFAULT_S2T_PROMPT)]
    )
    build = _build(tmp_path, listening_voices=0, cocktail_text_pairs=3)
    added = cocktail_conversations(build, tmp_path / "train.jsonl", tmp_path / "out.jsonl")
    assert added == {"voice_questions": 0, "text_pairs": 3}
    first, *texts = read_sharegpt(tmp_path / "out.jsonl", check_audio=False)
    assert first.turns[1].content == "Two." and len(texts) == 3
    assert [t.turns for t in texts] == [r.turns for r in replayed_text(build, 3)]
    line = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[-1])
    assert "audios" not in line or not line["audios"]
