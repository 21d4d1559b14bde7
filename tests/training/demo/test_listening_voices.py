"""The listening path's extra voices (``listening_voices``): the training questions in many more voices."""

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from funaudiochat.training.demo.context import DemoSettings
from funaudiochat.training.demo.model_stages import question_voices, voice_questions
from funaudiochat.training.demo.speech_stages import (
    ASSISTANT_VOICE,
    EVAL_VOICES,
    LISTENING_VARIANTS,
    LISTENING_VOICES,
    TRAIN_VOICES,
)


def test_the_extra_voices_are_real_variants_and_keep_every_heldout_voice_out():
    listed = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True)
    files = {line.split()[4].removeprefix("!v/") for line in listed.stdout.splitlines()[1:]}
    # an unknown variant would silently speak in the accent's own voice
    assert set(LISTENING_VARIANTS) <= files
    assert len(LISTENING_VOICES) == len(set(LISTENING_VOICES)) == 270
    assert not set(LISTENING_VOICES) & set(TRAIN_VOICES + EVAL_VOICES + (ASSISTANT_VOICE,))
    # en-029+f2 is left out itself (f2 is a training variant); en-gb-x-gbcwmd has no variant
    heldout_variants = {voice.partition("+")[2] for voice in EVAL_VOICES} - {"f2", ""}
    assert heldout_variants == {"m7", "f1", "m1"}
    assert not any(voice.partition("+")[2] in heldout_variants for voice in LISTENING_VOICES)
    assert not any(voice.startswith("en-gb-x-gbcwmd") for voice in LISTENING_VOICES)  # the held-out accent
    # the first ones share out the accents
    assert len({voice.partition("+")[0] for voice in LISTENING_VOICES[:7]}) >= 6


def test_question_voices_are_the_training_ones_and_the_first_extra_ones():
    assert question_voices(DemoSettings(listening_voices=0)) == TRAIN_VOICES
    assert question_voices(DemoSettings(listening_voices=3)) == TRAIN_VOICES + LISTENING_VOICES[:3]
    with pytest.raises(ValueError, match="listening_voices must be 0 to 270, got 271"):
        question_voices(DemoSettings(listening_voices=271))


def _build(root, **settings):
    return SimpleNamespace(settings=DemoSettings(**settings), folder=lambda stage: root / stage)


def test_voice_questions_speak_every_training_question_in_the_extra_voices(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    records = [
        {"split": "train", "task": "arithmetic", "question": "What is two plus two?", "answer": "Four."},
        {"split": "train", "task": "tool", "question": "Set a timer for one minute.", "answer": "Okay."},
        {"split": "heldout_phrasing", "task": "fact", "question": "Grass is?", "answer": "Green."},
    ]
    (corpus / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert voice_questions(_build(tmp_path, listening_voices=0), corpus) == []
    assert not (tmp_path / "audio_encoder").exists()

    build = _build(tmp_path, listening_voices=2, listening_voice_rounds=3)
    lines = voice_questions(build, corpus)
    assert [(line["text"], line["answer"], line["task"]) for line in lines] == [
        (r["question"], r["answer"], r["task"]) for r in records[:2]
    ] * 3
    assert {line["voice"] for line in lines} <= set(LISTENING_VOICES[:2])
    folder = (tmp_path / "audio_encoder" / "voices").resolve()
    assert all(Path(line["audio"]).is_file() and Path(line["audio"]).parent == folder for line in lines)
    assert voice_questions(build, corpus) == lines  # spoken once: kept while the plan is the same
    small = _build(tmp_path, listening_voices=2, listening_voice_rounds=1, pairs_per_file=1)
    records.insert(1, {"split": "train", "task": "arithmetic", "question": "One plus one?", "answer": "Two."})
    (corpus / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert [line["text"] for line in voice_questions(small, corpus)] == [r["question"] for r in records[::2]]


def test_core_cocktail_conversations_gain_the_voice_questions_answered_in_text(tmp_path):
    """``cocktail_voice_questions``: the conversations as they are, then each question-answering training
    question in the more voices answered in text (tool requests stay out)."""
    from funaudiochat.drsr.prompts import DEFAULT_S2T_PROMPT
    from funaudiochat.training.data import read_sharegpt, write_sharegpt
    from funaudiochat.training.data.records import AUDIO_TEMPLATE, Conversation, Turn, UserAudio
    from funaudiochat.training.demo.finetune_stages import cocktail_conversations

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    records = [
        {"split": "train", "task": "fact", "question": "What colour is snow?", "answer": "Snow is white."},
        {"split": "train", "task": "tool", "question": "Set a timer for one minute.", "answer": "Okay."},
    ]
    (corpus / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    turns = [Turn("user", AUDIO_TEMPLATE), Turn("assistant", "Two.")]
    first = Conversation(turns, [UserAudio("/a/q.wav", 25)], DEFAULT_S2T_PROMPT)
    write_sharegpt(tmp_path / "train.jsonl", [first])
    build = _build(tmp_path, listening_voices=1, listening_voice_rounds=1)
    build.require = lambda stage, by: tmp_path / stage
    added = cocktail_conversations(build, tmp_path / "train.jsonl", tmp_path / "out.jsonl")
    assert added == {"voice_questions": 1, "text_pairs": 0}
    kept, voiced = read_sharegpt(tmp_path / "out.jsonl", check_audio=False)
    assert kept.turns[1].content == "Two." and voiced.turns[1].content == "Snow is white."
    assert voiced.user_audios[0].ref_text == "What colour is snow?" and voiced.system == DEFAULT_S2T_PROMPT
