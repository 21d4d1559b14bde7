"""Speaker table: safetensors round trip, the spk2info converter (tensors only), and clear errors."""

import pickle

import pytest
import torch
from funaudiochat.vocoder.speakers import Speaker, SpeakerTable


def spk2info_like(path, with_prompt=True):
    """A file in the official ``spk2info.pt`` layout: name -> embedding [1,192], speech_token, speech_feat."""
    g = torch.Generator().manual_seed(0)
    info = {
        "中文女": {"embedding": torch.randn(1, 192, generator=g)},
        "male": {"embedding": torch.randn(1, 192, generator=g)},
    }
    if with_prompt:
        info["中文女"].update(
            speech_token=torch.randint(0, 6561, (1, 50), generator=g),
            speech_feat=torch.randn(1, 100, 80, generator=g),
        )
    torch.save(info, path)
    return info


def test_spk2info_converts_and_round_trips(tmp_path):
    info = spk2info_like(tmp_path / "spk2info.pt")
    table = SpeakerTable.from_spk2info(tmp_path / "spk2info.pt")
    assert table.names == ["中文女", "male"]
    assert torch.equal(table["中文女"].embedding, info["中文女"]["embedding"][0])
    assert table["中文女"].prompt_mel.shape == (100, 80) and table["male"].prompt_tokens is None
    table.save(tmp_path / "speakers.safetensors")
    again = SpeakerTable.load(tmp_path / "speakers.safetensors")
    assert again.names == table.names
    for name in table:
        assert torch.equal(again[name].embedding, table[name].embedding)
    assert torch.equal(again["中文女"].prompt_tokens, table["中文女"].prompt_tokens)


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_spk2info_with_arbitrary_objects_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"voice": {"embedding": torch.zeros(1, 192), "payload": Evil()}}, path)
    with pytest.raises(ValueError, match="refused: not a tensors-only torch file"):
        SpeakerTable.from_spk2info(path)
    assert "this must never run" not in capsys.readouterr().out
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="refused"):
        SpeakerTable.from_spk2info(raw)


def test_unknown_speaker_lists_the_known_ones(tmp_path):
    table = SpeakerTable({"alice": Speaker(torch.zeros(192)), "bob": Speaker(torch.ones(192))})
    with pytest.raises(KeyError, match="unknown speaker 'carol'; known speakers: 'alice', 'bob'"):
        table["carol"]


def test_bad_speakers_are_refused(tmp_path):
    bad = torch.zeros(192)
    bad[3] = float("nan")
    with pytest.raises(ValueError, match="embedding contains NaN"):
        SpeakerTable({"x": Speaker(bad)})
    with pytest.raises(ValueError, match=r"embedding must have shape \(192,\)"):
        SpeakerTable({"x": Speaker(torch.zeros(80))})
    with pytest.raises(ValueError, match="give both prompt_tokens and prompt_mel"):
        SpeakerTable({"x": Speaker(torch.zeros(192), prompt_tokens=torch.zeros(3, dtype=torch.long))})
    with pytest.raises(ValueError, match="no 'embedding' tensor"):
        torch.save({"x": {"speech_token": torch.zeros(1, 3)}}, tmp_path / "s.pt")
        SpeakerTable.from_spk2info(tmp_path / "s.pt")
    with pytest.raises(ValueError, match="speaker table not found"):
        SpeakerTable.load(tmp_path / "missing.safetensors")
