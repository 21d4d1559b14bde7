"""The vocoder mel equals a NumPy re-computation of Matcha's ``mel_spectrogram`` with librosa's Slaney
filters (CosyVoice3's feat_extractor settings)."""

import math

import numpy as np
import pytest
import torch
from funaudiochat.training.vocoder import MelConfig, MelSpectrogram


def slaney_hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    linear = f / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log_part, linear)


def slaney_mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    linear = m * (200.0 / 3)
    log_part = 1000.0 * np.exp((math.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log_part, linear)


def reference_filters(sr, n_fft, n_mels, fmin, fmax):
    """librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax) with its defaults (htk=False, norm='slaney')."""
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    edges = slaney_mel_to_hz(np.linspace(slaney_hz_to_mel(fmin), slaney_hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    weights = np.zeros((n_mels, len(freqs)))
    for i in range(n_mels):
        lower = -ramps[i] / widths[i]
        upper = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    return weights * (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[:, None]


def reference_mel(wave, sr=24000, n_fft=1920, hop=480, win=1920, n_mels=80, fmin=0.0, fmax=None):
    pad = (n_fft - hop) // 2
    x = np.pad(wave.astype(np.float64), (pad, pad), mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hann
    window = np.pad(window, ((n_fft - win) // 2, n_fft - win - (n_fft - win) // 2))
    frames = 1 + (len(x) - n_fft) // hop
    stack = np.stack([x[i * hop : i * hop + n_fft] * window for i in range(frames)])
    spec = np.fft.rfft(stack, axis=1)
    magnitude = np.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
    mel = reference_filters(sr, n_fft, n_mels, fmin, sr / 2 if fmax is None else fmax) @ magnitude.T
    return np.log(np.maximum(mel, 1e-5))


def test_matches_reference(speech_dir):
    from funaudiochat.tokenizer import load_audio

    wave = load_audio(speech_dir / "utt0.wav", 24000)[: 480 * 60]
    ours = MelSpectrogram()(wave)
    assert ours.shape == (80, 60)
    np.testing.assert_allclose(ours.numpy(), reference_mel(wave.numpy()), atol=2e-3, rtol=0)


def test_other_settings_match_reference():
    torch.manual_seed(0)
    wave = torch.randn(5000) * 0.1
    config = MelConfig(sample_rate=22050, n_fft=1024, hop_length=256, win_length=800, n_mels=64, f_max=8000.0)
    ours = MelSpectrogram(config)(wave.unsqueeze(0))[0]
    ref = reference_mel(wave.numpy(), 22050, 1024, 256, 800, 64, 0.0, 8000.0)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours.numpy(), ref, atol=2e-3, rtol=0)


def test_frames_and_gradient():
    mel = MelSpectrogram()
    assert mel.num_frames(480 * 7) == 7 and mel.num_frames(480 * 7 + 100) == 7
    wave = (torch.randn(2, 480 * 5) * 0.1).requires_grad_()
    out = mel(wave)
    assert out.shape == (2, 80, 5)
    out.sum().backward()
    assert torch.isfinite(wave.grad).all() and wave.grad.abs().sum() > 0


def test_errors():
    with pytest.raises(ValueError, match="at least 721"):
        MelSpectrogram()(torch.zeros(700))
    with pytest.raises(ValueError, match="f_max"):
        MelConfig(f_max=20000.0)
    with pytest.raises(ValueError, match="win_length"):
        MelConfig(win_length=4000)
