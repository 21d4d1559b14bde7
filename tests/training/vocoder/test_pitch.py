"""YIN F0 targets: exact on synthetic periodic signals, zero on silence and noise, plausible on speech."""

import math

import pytest
import torch
from funaudiochat.training.vocoder import PitchConfig, PitchTracker


def harmonic(f0: float, seconds: float = 0.5, rate: int = 24000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    return sum(0.3 / k * torch.sin(2 * math.pi * k * f0 * t + k) for k in range(1, 6)).float()


@pytest.mark.parametrize("f0", [85.0, 137.5, 220.0, 410.0])
def test_periodic_signal(f0):
    wave = harmonic(f0)
    track = PitchTracker()(wave)
    assert track.shape == (wave.shape[0] // 480,)
    inner = track[2:-2]
    assert (inner > 0).all()
    assert torch.allclose(inner, torch.full_like(inner, f0), rtol=0.01)


def test_batch_silence_and_noise():
    torch.manual_seed(0)
    batch = torch.stack([harmonic(150.0), torch.zeros(12000), torch.randn(12000) * 0.3])
    track = PitchTracker()(batch)
    assert track.shape == (3, 25)
    assert (track[0, 2:-2] > 0).all()
    assert (track[1] == 0).all()
    assert (track[2] == 0).float().mean() > 0.8


def test_speech(speech_dir):
    from funaudiochat.tokenizer import load_audio

    wave = load_audio(speech_dir / "utt2.wav", 24000)
    track = PitchTracker()(wave)
    voiced = track[track > 0]
    assert 0.2 < voiced.numel() / track.numel() < 0.95
    assert 80 < voiced.median() < 400


def test_config_errors():
    with pytest.raises(ValueError, match="f0_min"):
        PitchConfig(f0_min=500.0, f0_max=100.0)
    with pytest.raises(ValueError, match="threshold"):
        PitchConfig(threshold=1.5)
    with pytest.raises(ValueError, match="float tensor"):
        PitchTracker()(torch.zeros(2, 2, 100))
