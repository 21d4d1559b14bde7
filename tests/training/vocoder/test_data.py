"""Vocoder data: item listing, token/mel alignment, HiFT segments, pseudo speakers, collation."""

import pytest
import torch
from funaudiochat.training.vocoder import (
    VocoderDataModule,
    collate_vocoder,
    list_audio,
    pseudo_speaker_embedding,
)


def test_list_audio_folder_and_manifest(speech_dir, tmp_path):
    items = list_audio(speech_dir)
    assert [i.path.name for i in items] == [f"utt{i}.wav" for i in range(4)]
    assert {i.speaker for i in items} == {speech_dir.name}
    assert [i.speaker for i in list_audio(speech_dir, "stem")] == [f"utt{i}" for i in range(4)]
    manifest = tmp_path / "train.tsv"
    manifest.write_text(f"# comment\n{speech_dir / 'utt1.wav'}\tanna\n\n{speech_dir / 'utt3.wav'}\n")
    items = list_audio([manifest], "none")
    assert [(i.path.name, i.speaker) for i in items] == [("utt1.wav", "anna"), ("utt3.wav", "default")]


def test_list_audio_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        list_audio(tmp_path / "missing")
    with pytest.raises(ValueError, match="no audio files"):
        list_audio(tmp_path)
    bad = tmp_path / "list.txt"
    bad.write_text("nowhere.wav\n")
    with pytest.raises(ValueError, match=r"list.txt:1: audio file .* not found"):
        list_audio(bad)
    with pytest.raises(ValueError, match="speaker_from"):
        list_audio(tmp_path, "voice")


def test_pseudo_speaker_embedding():
    a = pseudo_speaker_embedding("anna")
    assert a.shape == (192,)
    assert torch.equal(a, pseudo_speaker_embedding("anna"))
    assert not torch.allclose(a, pseudo_speaker_embedding("bert"))
    assert not torch.allclose(a, pseudo_speaker_embedding("anna", seed=1))


def test_flow_items(speech_dir):
    data = VocoderDataModule(train=speech_dir, task="flow", batch_size=3, speaker_from="stem", max_tokens=40)
    data.setup("fit")
    assert len(data.train_set) == 4
    for i in range(4):
        item = data.train_set[i]
        n = item["speech_token"].shape[0]
        assert 0 < n <= 40
        assert item["speech_feat"].shape == (2 * n, 80)
        assert item["speech_token"].dtype == torch.long and int(item["speech_token"].max()) < 6561
    uncropped = VocoderDataModule(train=speech_dir, task="flow", max_tokens=None)
    uncropped.setup()
    item = uncropped.train_set[0]
    seconds = item["speech_feat"].shape[0] / 50
    assert abs(item["speech_token"].shape[0] / 25 - seconds) < 1e-6 and seconds > 1.0

    batch = next(iter(data.train_dataloader()))
    assert batch["speech_token"].shape[0] == 3 and batch["embedding"].shape == (3, 192)
    assert torch.equal(batch["speech_feat_len"], 2 * batch["speech_token_len"])
    assert batch["speech_feat"].shape[1] == int(batch["speech_feat_len"].max())


def test_hift_items(speech_dir):
    data = VocoderDataModule(train=speech_dir, task="hift", segment_frames=20, batch_size=2, shuffle=False)
    data.setup("fit")
    item = data.train_set[1]
    assert item["speech"].shape == (9600,)
    assert item["speech_feat"].shape == (20, 80)
    assert item["pitch_feat"].shape == (20,)
    batch = next(iter(data.train_dataloader()))
    assert batch["speech"].shape == (2, 9600) and batch["pitch_feat"].shape == (2, 20)
    fixed = VocoderDataModule(train=speech_dir, task="hift", segment_frames=20, random_crop=False)
    fixed.setup()
    assert torch.equal(fixed.train_set[0]["speech"], fixed.train_set[0]["speech"])
    long = VocoderDataModule(train=speech_dir, task="hift", segment_frames=1000, random_crop=False)
    long.setup()
    padded = long.train_set[0]["speech"]
    assert padded.shape == (480_000,) and (padded[-24000:] == 0).all()


def test_cache_audio_reads_each_file_once(speech_dir, tmp_path):
    import shutil

    copy = tmp_path / "speech"
    shutil.copytree(speech_dir, copy)
    kwargs = {"task": "hift", "segment_frames": 20, "random_crop": False}
    cached = VocoderDataModule(train=copy, cache_audio=True, **kwargs)
    plain = VocoderDataModule(train=copy, **kwargs)
    cached.setup()
    plain.setup()
    first = [cached.train_set[i]["speech"] for i in range(4)]
    assert all(torch.equal(a, plain.train_set[i]["speech"]) for i, a in enumerate(first))
    shutil.rmtree(copy)  # the cached set no longer needs the files; the other one does
    assert all(torch.equal(a, cached.train_set[i]["speech"]) for i, a in enumerate(first))
    with pytest.raises(ValueError, match="not found"):
        plain.train_set[0]


def test_collate_pads_with_lengths():
    examples = [
        {"utt": "a", "embedding": torch.zeros(192), "speech_token": torch.tensor([1, 2, 3])},
        {"utt": "b", "embedding": torch.ones(192), "speech_token": torch.tensor([4])},
    ]
    batch = collate_vocoder(examples)
    assert batch["utt"] == ["a", "b"]
    assert batch["speech_token"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["speech_token_len"].tolist() == [3, 1]
    with pytest.raises(ValueError, match="empty"):
        collate_vocoder([])


def test_datamodule_errors(speech_dir):
    with pytest.raises(ValueError, match="task"):
        VocoderDataModule(train=speech_dir, task="vocode")
    with pytest.raises(ValueError, match="nowhere: not found"):
        VocoderDataModule(train=speech_dir, val=[speech_dir / "nowhere"])
    with pytest.raises(ValueError, match="MelConfig"):
        VocoderDataModule(train=speech_dir, mel={"n_bins": 80})
    bad_rate = VocoderDataModule(train=speech_dir, task="flow", mel={"hop_length": 240})
    with pytest.raises(ValueError, match="50 mel frames per second"):
        bad_rate.setup()
