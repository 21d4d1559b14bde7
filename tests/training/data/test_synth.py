"""funaudiochat.training.data.synth (tools/synth_spoken_data.py) end to end on two pairs: official data
that validates, our manifest, the same files for the same seed, and input errors named by file and line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from funaudiochat.training.data import read_manifest, read_sharegpt, synth


@pytest.fixture
def pairs(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("# question<TAB>answer\nWhat is two plus three?\tFive.\n\n-1 plus 1?\tZero.\n")
    return path


def run(pairs, out, *extra):
    argv = [str(pairs), "--out", str(out), "--voices", "en-us,en-gb+f3", "--speeds", "150,180", "--seed", "3"]
    return synth.main([*argv, *extra])


def test_two_pairs_end_to_end(pairs, tmp_path, capsys):
    out = tmp_path / "data"
    assert run(pairs, out, "--snr-db", "15") == 0
    assert "tiny random SpeechTokenizer" in capsys.readouterr().err
    conversations = read_sharegpt(out / "train.jsonl", check_reference_audio=True)
    entries = read_manifest(out / "manifest.jsonl")
    assert [e.id for e in entries] == ["qa00002", "qa00004"]  # default ids: the input line numbers
    assert [c.audios[1].text for c in conversations] == ["Five.", "Zero."]
    for conv, entry in zip(conversations, entries, strict=True):
        user, answer = conv.audios
        assert conv.system == "You are asked to generate both text and speech tokens at the same time."
        assert user.ref_text == entry.text and user.path == entry.audio and Path(user.path).is_file()
        assert answer.delay == 10 and np.array_equal(answer.codes, entry.answer_codes)
        assert answer.ref_path == entry.answer_audio and sf.info(answer.ref_path).samplerate == 22050
    voices = synth.question_voices(out)
    assert list(voices) == ["qa00002", "qa00004"] and set(voices.values()) <= {"en-us", "en-gb+f3"}
    record = json.loads((out / "train.jsonl").read_text().splitlines()[0])
    assert list(record) == ["system", "messages", "audio"] and all(
        isinstance(a, str) for a in record["audio"]
    )


def test_same_seed_same_files(pairs, tmp_path):
    for name in ("a", "b"):
        run(pairs, tmp_path / name, "--relative-paths", "--format", "sharegpt")
    first, second = (tmp_path / n / "train.jsonl" for n in ("a", "b"))
    assert first.read_text() == second.read_text()
    assert not (tmp_path / "a" / "manifest.jsonl").exists()
    assert read_sharegpt(first)[0].audios[0].path == str(tmp_path / "a" / "audio" / "qa00002_q.wav")


def test_input_problems_are_listed_with_file_and_line(tmp_path):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(
        '{"question": "Hi?", "answer": ""}\n{"question": "Ok?", "answer": "Yes.", "id": "a b"}\n[1]\n'
    )
    with pytest.raises(SystemExit) as info:
        synth.main([str(bad), "--out", str(tmp_path / "out")])
    message = str(info.value)
    assert f"{bad}:1: answer: empty or not a string (non-empty text to speak)" in message
    assert f"{bad}:2: id: 'a b'" in message and f"{bad}:3: json: not an object" in message


def test_tokenizer_weights_file_is_used(pairs, tmp_path, capsys):
    from funaudiochat.tokenizer import SpeechTokenizer, load_audio

    weights = tmp_path / "tok.safetensors"
    tokenizer = SpeechTokenizer.random(seed=5)
    tokenizer.save_safetensors(weights)
    run(pairs, tmp_path / "out", "--format", "manifest", "--tokenizer", str(weights))
    assert "tiny random" not in capsys.readouterr().err
    for entry in read_manifest(tmp_path / "out" / "manifest.jsonl"):
        expected = tokenizer.encode(load_audio(entry.answer_audio))[0]
        assert entry.answer_codes.tolist() == expected.tolist()


def test_no_codes_writes_answers_as_audio_only(pairs, tmp_path, capsys):
    run(pairs, tmp_path / "out", "--format", "manifest", "--no-codes")
    assert "tiny random" not in capsys.readouterr().err
    entries = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert [e.answer_codes for e in entries] == [None, None]
    assert all(Path(e.answer_audio).is_file() for e in entries)
    assert "answer_codes" not in (tmp_path / "out" / "manifest.jsonl").read_text()
    for bad in (["--format", "both"], ["--format", "manifest", "--tokenizer", "tok.safetensors"]):
        with pytest.raises(SystemExit):
            run(pairs, tmp_path / "bad", "--no-codes", *bad)
    assert "--no-codes writes the manifest only" in capsys.readouterr().err
