"""Our manifest: round trip, conversion to the official records, and one test per error kind."""

from __future__ import annotations

import json

import numpy as np
import pytest
from funaudiochat.training.data import (
    AssistantSpeech,
    DataValidationError,
    ManifestEntry,
    UserAudio,
    read_manifest,
    read_manifest_conversations,
    read_sharegpt,
    write_manifest,
    write_sharegpt,
)

RATE = 22050
SAMPLES = 40571  # 1.8399 s: 45 frames at 22.05 kHz, 46 after resampling to 16 kHz (the processor's count)


@pytest.fixture
def wavs(make_wav):
    return make_wav("q.wav", SAMPLES, RATE), make_wav("a.wav", 16000, 16000, seed=1)


def line(**fields) -> dict:
    base = {"id": "qa1", "audio": "q.wav", "text": "What is two plus three?", "answer_text": "Five."}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def problems_of(path, **kwargs) -> list[str]:
    with pytest.raises(DataValidationError) as info:
        read_manifest(path, **kwargs)
    return [str(p) for p in info.value.problems]


def test_round_trip_and_relative_paths(write_jsonl, wavs, tmp_path):
    lines = [
        line(answer_codes=[1, 2, 6560], duration=1.84, system="Be brief."),
        line(id="qa2", answer_audio="a.wav", text=None, answer_text=""),
    ]
    path = write_jsonl("manifest.jsonl", lines)
    entries = read_manifest(path)
    assert entries[0].audio == str(wavs[0]) and entries[1].answer_audio == str(wavs[1])
    assert entries[0].answer_codes.dtype == np.int16 and entries[1].answer_codes is None
    assert entries[0].audio_info.num_samples == SAMPLES
    out = write_manifest(tmp_path / "copy.jsonl", entries, relative_to=tmp_path)
    assert [json.loads(x) for x in out.read_text().splitlines()] == lines
    assert read_manifest(out) == entries


def test_entries_become_official_conversations(write_jsonl, wavs, tmp_path):
    path = write_jsonl("manifest.jsonl", [line(answer_codes=[7, 8], system="Be brief.")])
    [conv] = read_manifest_conversations(path)
    user, answer = conv.audios
    assert isinstance(user, UserAudio) and user.num_frames == 46 and user.ref_text.startswith("What is")
    assert isinstance(answer, AssistantSpeech) and answer.delay == 10 and answer.codes.tolist() == [7, 8]
    assert conv.system == "Be brief." and conv.source == "qa1"
    # the official file written from it validates (46 pads match the audio) and converts back
    [again] = read_sharegpt(write_sharegpt(tmp_path / "train.jsonl", [conv]))
    assert again == conv
    entry = ManifestEntry.from_conversation(again, "qa1")
    assert entry.audio == str(wavs[0]) and entry.answer_codes.tolist() == [7, 8]


def test_answer_audio_only_needs_tokenization(write_jsonl, wavs):
    [conv] = read_manifest_conversations(write_jsonl("m.jsonl", [line(answer_audio="a.wav")]))
    answer = conv.audios[1]
    assert conv.needs_codes and answer.codes is None and answer.ref_path == str(wavs[1])
    assert answer.duration == pytest.approx(1.0) and answer.num_slots(5) is None


def test_unknown_field_and_missing_required(write_jsonl, wavs):
    path = write_jsonl("m.jsonl", [{"id": "x", "audio": "q.wav", "answer_txt": "typo", "answer_codes": [1]}])
    problems = problems_of(path)
    assert f"{path}:1: answer_txt: unknown field (fields: id, audio, text, answer_text," in problems[0]
    assert f"{path}:1: answer_text: missing (a string)" in problems


def test_duplicate_id(write_jsonl, wavs):
    path = write_jsonl("m.jsonl", [line(answer_codes=[1]), line(answer_codes=[2])])
    assert problems_of(path) == [
        f"{path}:2: id: duplicate 'qa1' (first on line 1) (ids are unique in a manifest)"
    ]


def test_code_out_of_range(write_jsonl, wavs):
    path = write_jsonl("m.jsonl", [line(answer_codes=[1, 6561, -3])])
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:1: answer_codes[1]: 6561 out of range (2 bad codes in all)")
    assert problem.endswith("(a non-empty list of integer codes 0..6560 (25 Hz))")


def test_no_answer_speech(write_jsonl, wavs):
    [problem] = problems_of(write_jsonl("m.jsonl", [line()]))
    assert ":1: answer_codes: missing, and no answer_audio (answer_codes" in problem


def test_missing_audio_and_answer_audio(write_jsonl, tmp_path):
    path = write_jsonl("m.jsonl", [line(audio="gone.wav", answer_audio="gone_too.wav")])
    problems = problems_of(path)
    assert problems[0].startswith(f"{path}:1: audio: file not found: {tmp_path / 'gone.wav'}")
    assert problems[1].startswith(f"{path}:1: answer_audio: file not found: {tmp_path / 'gone_too.wav'}")


def test_duration_must_match_the_file(write_jsonl, wavs):
    path = write_jsonl("m.jsonl", [line(answer_codes=[1], duration=2.5)])
    assert problems_of(path) == [
        f"{path}:1: duration: 2.500 s but {wavs[0]} is 1.840 s (the file's duration, within 0.04 s)"
    ]
    bad = write_jsonl("n.jsonl", [line(answer_codes=[1], duration=-1)])
    assert problems_of(bad) == [f"{bad}:1: duration: -1 (a positive number of seconds, or absent)"]


def test_malformed_json_and_not_an_object(write_jsonl, wavs):
    path = write_jsonl("m.jsonl", [line(answer_codes=[1]), "{oops", "[1, 2]"])
    problems = problems_of(path)
    assert problems[0].startswith(f"{path}:2: json: not valid JSON (")
    assert problems[1] == f"{path}:3: json: a JSON array, not an object (one JSON object per line)"


def test_from_conversation_needs_single_turn(write_jsonl, wavs):
    [conv] = read_manifest_conversations(write_jsonl("m.jsonl", [line(answer_codes=[1])]))
    conv.turns[0].content = "Hello " + conv.turns[0].content
    with pytest.raises(ValueError, match="single-turn spoken Q/A only"):
        ManifestEntry.from_conversation(conv, "x")
