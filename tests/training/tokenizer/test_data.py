"""Tokenizer training data: folders with sidecar transcripts, JSONL manifests, log-mel, targets, batches."""

import json

import pytest
import torch
from funaudiochat.tokenizer import load_audio, log_mel_spectrogram
from funaudiochat.training.tokenizer import (
    TokenizerDataModule,
    Vocabulary,
    add_noise,
    collate_tokenizer,
    list_pairs,
    speed_perturb,
)

from .conftest import TRANSCRIPTS


def test_list_pairs_folder_and_manifest(transcribed_dir, tmp_path):
    pairs = list_pairs(transcribed_dir)
    assert [p.path.name for p in pairs] == [f"utt{i}.wav" for i in range(4)]
    assert [p.text for p in pairs] == TRANSCRIPTS
    manifest = tmp_path / "m.jsonl"
    lines = [json.dumps({"audio": str(transcribed_dir / "utt1.wav"), "text": "seven times eight"}), ""]
    (tmp_path / "local.wav").write_bytes((transcribed_dir / "utt0.wav").read_bytes())
    lines.append(json.dumps({"audio": "local.wav", "text": "two plus three", "speaker": "x"}))
    manifest.write_text("\n".join(lines), encoding="utf-8")
    both = list_pairs([manifest, transcribed_dir / "utt2.wav"])
    assert [(p.path.name, p.text) for p in both] == [
        ("utt1.wav", "seven times eight"),
        ("local.wav", "two plus three"),
        ("utt2.wav", TRANSCRIPTS[2]),
    ]
    assert both[1].path == tmp_path / "local.wav"


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "m.jsonl:1: not a JSON object"),
        ("[1, 2]", "must be a JSON object"),
        ('{"text": "hi"}', "'audio' must be a non-empty string"),
        ('{"audio": "utt0.wav", "text": 3}', "'text' must be a string"),
        ('{"audio": "nowhere.wav", "text": "hi"}', "nowhere.wav not found"),
    ],
)
def test_manifest_errors(tmp_path, line, message):
    (tmp_path / "m.jsonl").write_text(line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        list_pairs(tmp_path / "m.jsonl")


def test_source_errors(tmp_path, transcribed_dir):
    (tmp_path / "a.wav").write_bytes((transcribed_dir / "utt0.wav").read_bytes())
    with pytest.raises(ValueError, match=r"a\.wav: no transcript; expected the sidecar file .*a\.txt"):
        list_pairs(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        list_pairs(tmp_path / "empty")
    (tmp_path / "notes.csv").write_text("x")
    with pytest.raises(ValueError, match="expected a folder, a .jsonl manifest or an audio file"):
        list_pairs(tmp_path / "notes.csv")
    with pytest.raises(ValueError, match="not found"):
        TokenizerDataModule(train=str(tmp_path / "missing"))


def test_examples_and_batches(transcribed_dir):
    data = TokenizerDataModule(train=str(transcribed_dir), batch_size=3, shuffle=False)
    data.setup("fit")
    assert data.vocabulary == Vocabulary.characters()
    example = data.train_set[1]
    wave = load_audio(transcribed_dir / "utt1.wav")
    torch.testing.assert_close(example["mel"], log_mel_spectrogram(wave))
    assert data.vocabulary.decode(example["targets"].tolist()) == list("seven times eight is fifty six")

    batch = next(iter(data.train_dataloader()))
    assert batch["mel"].shape[:2] == (3, 128) and batch["mel"].shape[2] == int(batch["mel_len"].max())
    for i in range(3):
        item = data.train_set[i]
        n, m = int(batch["mel_len"][i]), int(batch["target_len"][i])
        assert torch.equal(batch["mel"][i, :, :n], item["mel"]) and (batch["mel"][i, :, n:] == 0).all()
        assert torch.equal(batch["targets"][i, :m], item["targets"]) and (batch["targets"][i, m:] == 0).all()
    assert batch["utt"][0].endswith("utt0.wav") and batch["text"] == TRANSCRIPTS[:3]
    with pytest.raises(ValueError, match="empty batch"):
        collate_tokenizer([])


def test_augmentation(transcribed_dir):
    wave = load_audio(transcribed_dir / "utt0.wav")
    faster = speed_perturb(wave, 1.1)
    assert abs(faster.shape[0] - wave.shape[0] / 1.1) < 2
    assert speed_perturb(wave, 1.0) is wave
    torch.manual_seed(0)
    noisy = add_noise(wave, 10.0)
    snr = 10 * torch.log10(wave.pow(2).mean() / (noisy - wave).pow(2).mean())
    assert 9.0 < float(snr) < 11.0
    assert torch.equal(add_noise(torch.zeros(100), 10.0), torch.zeros(100))

    plain = TokenizerDataModule(train=str(transcribed_dir), shuffle=False)
    augmented = TokenizerDataModule(
        train=str(transcribed_dir),
        val=str(transcribed_dir),
        speed_perturb=[0.8],
        noise_snr_db=[20, 20],
        noise_prob=1,
    )
    plain.setup("fit")
    augmented.setup("fit")
    a, b = plain.train_set[0]["mel"], augmented.train_set[0]["mel"]
    assert b.shape[1] == pytest.approx(a.shape[1] / 0.8, abs=2)
    assert torch.equal(augmented.val_set[0]["mel"], a)  # validation is never augmented


def test_datamodule_errors(transcribed_dir, tmp_path):
    with pytest.raises(ValueError, match="units must be one of"):
        TokenizerDataModule(train=str(transcribed_dir), units="graphemes")
    with pytest.raises(ValueError, match="speed_perturb"):
        TokenizerDataModule(train=str(transcribed_dir), speed_perturb=[0.0])
    with pytest.raises(ValueError, match="noise_snr_db"):
        TokenizerDataModule(train=str(transcribed_dir), noise_snr_db=[30, 10])
    (tmp_path / "bad.wav").write_bytes((transcribed_dir / "utt0.wav").read_bytes())
    (tmp_path / "bad.txt").write_text("5 \u20ac please")
    data = TokenizerDataModule(train=str(transcribed_dir), val=str(tmp_path))
    with pytest.raises(ValueError, match=r"bad\.wav: transcript '5 \u20ac please': character '\u20ac'"):
        data.setup("fit")
    data = TokenizerDataModule(train=str(tmp_path), unknown="drop")
    data.setup("fit")
    assert data.vocabulary.decode(data.train_set.targets[0].tolist()) == list("5 please")
    too_long = TokenizerDataModule(train=str(transcribed_dir), max_seconds=0.5)
    too_long.setup("fit")
    with pytest.raises(ValueError, match="longer than the limit"):
        too_long.train_set[0]


@pytest.mark.usefixtures("espeak_installed")  # fails, never skips, without espeak-ng
def test_phoneme_datamodule(transcribed_dir):
    data = TokenizerDataModule(train=str(transcribed_dir), units="phonemes")
    vocab = data.vocabulary  # built from the training transcripts on first use
    assert "θ" in vocab and "a" in vocab and len(vocab) < 60
    assert vocab.decode(data.train_set[0]["targets"].tolist())[:3] == ["w", "ʌ", "t"]
