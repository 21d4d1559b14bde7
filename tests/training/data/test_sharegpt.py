"""The official sharegpt JSONL: exact round trips, the accepted variants, and one test per error kind
(each message names file, line and field)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from funaudiochat.training.data import (
    AssistantSpeech,
    Conversation,
    DataValidationError,
    Turn,
    UserAudio,
    read_sharegpt,
    write_sharegpt,
)
from funaudiochat.training.data.speech_tokens import TokenStringError, assistant_token, parse_speech_token
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TEMPLATE = "<|audio_bos|><|AUDIO|><|audio_eos|>"
RATE = 22050
SAMPLES = 40572  # 1.84 s at 22.05 kHz: int(1.84 * 25) = 46 frames
FRAMES = 46


@pytest.fixture
def wav(make_wav):
    return make_wav("q.wav", SAMPLES, RATE)


def good_record(official_record, wav, **kwargs):
    return official_record(
        wav, FRAMES, [12, 873, 6560, 0, 5], "Two plus three is five.", "What is 2 + 3?", **kwargs
    )


def problems_of(path, **kwargs) -> list[str]:
    with pytest.raises(DataValidationError) as info:
        read_sharegpt(path, **kwargs)
    assert isinstance(info.value, ValueError)
    return [str(p) for p in info.value.problems]


# ------------------------------------------------------------------------------------------- round trips


def test_official_file_reads_into_typed_records(write_jsonl, official_record, wav):
    path = write_jsonl("train.jsonl", [good_record(official_record, wav)])
    [conv] = read_sharegpt(path)
    assert conv.source == f"{path}:1"
    assert conv.system.startswith("You are asked to generate both text and speech")
    assert [t.role for t in conv.turns] == ["user", "assistant"]
    user, answer = conv.audios
    assert isinstance(user, UserAudio) and user.path == str(wav) and user.num_frames == FRAMES
    assert user.ref_text == "What is 2 + 3?" and user.text == "" and user.num_slots(5) == 10
    assert isinstance(answer, AssistantSpeech) and answer.delay == 10 and answer.text.startswith("Two plus")
    assert answer.codes.dtype == np.int16 and answer.codes.tolist() == [12, 873, 6560, 0, 5]
    assert answer.num_slots(5) == 3  # ceil((10 + 5) / 5)
    assert conv.duration == pytest.approx((FRAMES + 5) / 25)


def test_official_file_round_trips_byte_for_byte(write_jsonl, official_record, wav, tmp_path):
    records = [good_record(official_record, wav), good_record(official_record, wav, system="Be brief. 你好")]
    records[1]["id"] = "kept-extra-key"
    path = write_jsonl("train.jsonl", records)
    out = write_sharegpt(tmp_path / "copy.jsonl", read_sharegpt(path))
    assert out.read_text(encoding="utf-8") == path.read_text(encoding="utf-8")


def test_relative_paths_resolve_against_the_file_and_write_back(write_jsonl, official_record, wav, tmp_path):
    record = good_record(official_record, wav)
    entry = json.loads(record["audio"][0])
    entry["path"] = wav.name
    record["audio"][0] = json.dumps(entry, ensure_ascii=False, sort_keys=True)
    path = write_jsonl("train.jsonl", [record])
    [conv] = read_sharegpt(path)
    assert conv.audios[0].path == str(tmp_path / wav.name)
    out = write_sharegpt(tmp_path / "copy.jsonl", [conv], relative_to=tmp_path)
    assert out.read_text(encoding="utf-8") == path.read_text(encoding="utf-8")


def test_llamafactory_default_layout_reads_like_the_official_one(write_jsonl, official_record, wav):
    official = read_sharegpt(write_jsonl("a.jsonl", [good_record(official_record, wav)]))[0]
    record = good_record(official_record, wav)
    entries = [json.loads(e) for e in record["audio"]]
    entries[0]["wav_path"] = entries[0].pop("path")
    variant = {
        "conversations": [
            {"from": "system", "value": record["system"]},
            {"from": "human", "value": TEMPLATE},
            {"from": "gpt", "value": TEMPLATE},
        ],
        "audios": entries,  # objects instead of JSON strings
    }
    [conv] = read_sharegpt(write_jsonl("b.jsonl", [variant]))
    assert conv == official


def _conversations():
    """Random multi-turn conversations: text and audio mixed in user turns, speech or text replies."""
    text = st.text(alphabet='abc xyz?.,é你\u2028"\\', max_size=12)  # U+2028 must not split a line
    codes = st.lists(st.integers(0, 6560), min_size=1, max_size=30)

    @st.composite
    def build(draw):
        turns, audios = [], []
        for _ in range(draw(st.integers(1, 3))):
            user_audio = draw(st.integers(0, 2))
            turns.append(Turn("user", draw(text) + TEMPLATE * user_audio))
            for _ in range(user_audio):
                audios.append(UserAudio("/data/q.wav", draw(st.integers(1, 400)), ref_text=draw(text)))
            if draw(st.booleans()):
                turns.append(Turn("assistant", TEMPLATE))
                delay = draw(st.sampled_from([10, 0, 3]))
                audios.append(
                    AssistantSpeech(draw(text), np.array(draw(codes)), delay, ref_path="/data/a.wav")
                )
            else:
                turns.append(Turn("assistant", draw(text) or "ok"))
        system = draw(st.one_of(st.none(), text))
        return Conversation(turns, audios, system=system)

    return build()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conversations=st.lists(_conversations(), min_size=1, max_size=4))
def test_any_conversation_round_trips(conversations, tmp_path):
    path = write_sharegpt(tmp_path / "rt.jsonl", conversations)
    again = read_sharegpt(path, check_audio=False, expected_delay=None)
    assert again == conversations
    assert write_sharegpt(tmp_path / "rt2.jsonl", again).read_bytes() == path.read_bytes()


def test_token_strings_parse_and_count():
    assert parse_speech_token("<|audio_pad|>" * 7).num_pads == 7
    parsed = parse_speech_token("<|audio_bos|>" * 2 + "[AU0001][AU6560]")
    assert parsed.delay == 2 and parsed.codes.tolist() == [1, 6560] and not parsed.is_user
    assert assistant_token(parsed.codes, 2) == "<|audio_bos|>" * 2 + "[AU0001][AU6560]"


@pytest.mark.parametrize(
    "token, message",
    [
        ("", "is empty"),
        ("<|audio_pad|>[AU0001]", "code [AU0001] at character 13 in a <|audio_pad|> string"),
        ("[AU0001]<|audio_bos|>", "<|audio_bos|> at character 8 after a code"),
        ("<|audio_bos|><|audio_pad|>", "<|audio_pad|> at character 13 after speech tokens"),
        ("<|audio_bos|>" * 10, "10 <|audio_bos|> but no [AU####] code"),
        ("[AU0001] [AU0002]", "unexpected text ' ' at character 8"),
        ("<|audio_pad|>x", "unexpected text 'x' at character 13"),
    ],
)
def test_malformed_token_strings(token, message):
    with pytest.raises(TokenStringError) as info:
        parse_speech_token(token)
    assert message in str(info.value) and "[AU0000]..[AU6560]" in str(info.value)


# ----------------------------------------------------------------------------------------- error kinds


def test_malformed_json_names_file_line_and_column(write_jsonl, official_record, wav):
    path = write_jsonl("train.jsonl", [good_record(official_record, wav), '{"system": "x", "messages": [}'])
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:2: json: not valid JSON (") and "column" in problem
    assert problem.endswith("(one JSON object per line)")


def test_non_utf8_line(write_jsonl, official_record, wav, tmp_path):
    path = write_jsonl("train.jsonl", [good_record(official_record, wav)])
    path.write_bytes(path.read_bytes() + b'{"system": "caf\xe9"}\n')
    [problem] = problems_of(path)
    assert problem == f"{path}:2: line: not UTF-8 text (invalid continuation byte at byte 15) (UTF-8 JSON)"


def test_missing_messages_field(write_jsonl, official_record, wav):
    record = good_record(official_record, wav)
    del record["messages"]
    path = write_jsonl("train.jsonl", [record])
    assert problems_of(path) == [f'{path}:1: messages: missing (a list of {{"role", "content"}} messages)']


def test_unknown_role(write_jsonl, official_record, wav):
    record = good_record(official_record, wav)
    record["messages"][0]["role"] = "human"
    [problem] = problems_of(write_jsonl("train.jsonl", [record]))
    assert re.search(
        r"train\.jsonl:1: messages\[0\]\.role: unknown role 'human' \(allowed: user, assistant;", problem
    )


def test_turns_out_of_order(write_jsonl, official_record, wav):
    record = good_record(official_record, wav)
    record["messages"].reverse()
    [problem] = problems_of(write_jsonl("train.jsonl", [record]))
    assert (
        ":1: messages[0].role: 'assistant' where 'user' belongs (turns alternate user, assistant" in problem
    )


def test_missing_audio_file(write_jsonl, official_record, tmp_path):
    record = official_record(tmp_path / "nowhere.wav", FRAMES, [1, 2], "hi")
    [problem] = problems_of(write_jsonl("train.jsonl", [record]))
    assert (
        f":1: audio[0].path: file not found: {tmp_path / 'nowhere.wav'} (a readable WAV/FLAC/OGG" in problem
    )


def test_unreadable_audio_file(write_jsonl, official_record, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    [problem] = problems_of(write_jsonl("train.jsonl", [official_record(bad, FRAMES, [1, 2], "hi")]))
    assert ":1: audio[0].path: cannot read audio" in problem


def test_audio_longer_than_the_limit(write_jsonl, official_record, wav):
    [problem] = problems_of(
        write_jsonl("train.jsonl", [good_record(official_record, wav)]), max_audio_seconds=1.0
    )
    assert ":1: audio[0].path: audio is 1.84 s long, longer than 1 s" in problem


def test_code_out_of_range(write_jsonl, official_record, wav):
    record = official_record(wav, FRAMES, [5, 6561], "hi")
    [problem] = problems_of(write_jsonl("train.jsonl", [record]))
    assert ":1: audio[1].token: code [AU6561] (code #1, character" in problem
    assert problem.endswith("out of range (codes 0..6560)")


def test_malformed_code(write_jsonl, official_record, wav):
    record = official_record(wav, FRAMES, [5], "hi")
    entry = json.loads(record["audio"][1])
    entry["token"] += "[AU12]"
    record["audio"][1] = json.dumps(entry)
    [problem] = problems_of(write_jsonl("train.jsonl", [record]))
    assert ":1: audio[1].token: malformed code '[AU12]'" in problem and "[AU%04d]" in problem


def test_pad_count_not_matching_the_duration_is_issue_30(write_jsonl, official_record, wav):
    record = official_record(wav, 30, [1, 2, 3], "hi")
    [problem] = problems_of(write_jsonl("train.jsonl", [record]))
    assert f":1: audio[0].token: 30 <|audio_pad|> for 1.840 s of audio in {wav}" in problem
    assert "(46 = int(duration_s * 25)" in problem and "issue #30" in problem


def test_both_official_frame_counts_are_accepted(write_jsonl, official_record, make_wav):
    # 40571 samples at 22.05 kHz: int(40571 / 22050 * 25) = 45 (the data script's count), but resampled to
    # 16 kHz they are 29440 samples and int(29440 / 16000 * 25) = 46 (the processor's count).
    wav = make_wav("q.wav", 40571, 22050)
    for frames in (45, 46):
        read_sharegpt(write_jsonl(f"f{frames}.jsonl", [official_record(wav, frames, [1], "hi")]))
    [problem] = problems_of(write_jsonl("f47.jsonl", [official_record(wav, 47, [1], "hi")]))
    assert "47 <|audio_pad|>" in problem and "(45 or 46 = int(duration_s * 25)" in problem


def test_wrong_speech_delay(write_jsonl, official_record, wav):
    record = official_record(wav, FRAMES, [1, 2], "hi", delay=9)
    [problem] = problems_of(write_jsonl("train.jsonl", [record]))
    assert problem.endswith(
        ":1: audio[1].token: 9 <|audio_bos|> before the codes (10, the speech delay of the data)"
    )


def test_entry_count_must_match_placeholders(write_jsonl, official_record, wav):
    record = good_record(official_record, wav)
    record["audio"] = record["audio"][:1]
    [problem] = problems_of(write_jsonl("train.jsonl", [record]))
    assert ":1: audio: 1 entries for 2 audio placeholders in the messages (one entry per" in problem


def test_audio_kind_must_fit_the_turn(write_jsonl, official_record, official_entry, wav):
    record = good_record(official_record, wav)
    record["audio"].reverse()
    problems = problems_of(write_jsonl("train.jsonl", [record]))
    assert any(":1: audio[0].token: assistant speech codes in a user turn" in p for p in problems)
    assert any(":1: audio[1].token: <|audio_pad|> (user audio) in an assistant turn" in p for p in problems)


def test_missing_entry_fields_and_bad_entry_json(write_jsonl, official_record, wav):
    record = good_record(official_record, wav)
    entry = json.loads(record["audio"][1])
    del entry["token"], entry["text"]
    record["audio"][1] = json.dumps(entry)
    other = good_record(official_record, wav)
    other["audio"][0] = '{"path": '
    problems = problems_of(write_jsonl("train.jsonl", [record, other]))
    assert any(":1: audio[1].token: missing" in p for p in problems)
    assert any(':1: audio[1].text: missing (a string ("" for user audio))' in p for p in problems)
    assert any(":2: audio[0]: not valid JSON" in p for p in problems)


def test_stray_audio_token_outside_the_template(write_jsonl, official_record, wav):
    record = good_record(official_record, wav)
    record["messages"][0]["content"] = TEMPLATE + " and <|AUDIO|>"
    [problem] = problems_of(write_jsonl("train.jsonl", [record]))
    assert ":1: messages[0].content: a <|AUDIO|> outside <|audio_bos|><|AUDIO|><|audio_eos|>" in problem


def test_every_problem_of_a_file_is_listed_at_once(write_jsonl, official_record, wav, tmp_path):
    bad_role = good_record(official_record, wav)
    bad_role["messages"][1]["role"] = "bot"
    lines = [
        good_record(official_record, wav),
        "not json",
        bad_role,
        official_record(tmp_path / "gone.wav", FRAMES, [1], "x"),
        official_record(wav, 12, [7000], "y"),
        good_record(official_record, wav),
    ]
    path = write_jsonl("train.jsonl", lines)
    with pytest.raises(ValueError) as info:
        read_sharegpt(path)
    message = str(info.value)
    assert message.splitlines()[0] == f"5 problems in {path}:"
    found = [(p.line, p.field) for p in info.value.problems]
    assert found == [
        (2, "json"),
        (3, "messages[1].role"),
        (4, "audio[0].path"),
        (5, "audio[0].token"),  # 12 pads for 1.84 s
        (5, "audio[1].token"),  # code 7000
    ]
    assert all(str(p) in message for p in info.value.problems)
