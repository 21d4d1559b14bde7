"""load_audio: formats, resampling, mixing, and one clear error per kind of bad input."""

import numpy as np
import pytest
import torch
from funaudiochat.tokenizer import load_audio


def test_reads_espeak_wav_and_resamples_to_16k(speech_dir):
    wav = load_audio(speech_dir / "utt0.wav")
    assert wav.dtype == torch.float32 and wav.ndim == 1
    import soundfile as sf

    info = sf.info(str(speech_dir / "utt0.wav"))
    assert info.samplerate == 22050
    assert abs(wav.shape[0] - round(info.frames * 16000 / 22050)) <= 1
    assert wav.abs().max() <= 1.0 and wav.abs().max() > 0.05


@pytest.mark.parametrize("fmt,subtype", [("wav", "PCM_16"), ("flac", "PCM_24"), ("ogg", "VORBIS")])
def test_formats_rates_and_channels(tmp_path, write_wav, fmt, subtype):
    rate = 44100
    t = np.arange(rate // 2) / rate
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 440 * t)
    path = write_wav(tmp_path / f"tone.{fmt}", np.stack([left, right], axis=1), rate, subtype)
    wav = load_audio(path)
    assert wav.shape[0] == pytest.approx(8000, abs=2)
    # mono mix of 0.5 and 0.25 amplitude sines in phase: 0.375 peak
    tol = 0.05 if fmt == "ogg" else 0.01
    assert wav[1000:-1000].abs().max().item() == pytest.approx(0.375, abs=tol)


def test_array_inputs_int16_and_torch_channels_first():
    samples = (np.sin(np.linspace(0, 100, 16000)) * 16000).astype(np.int16)
    wav = load_audio(samples, source_rate=16000)
    assert wav.abs().max().item() == pytest.approx(16000 / 32768, rel=1e-3)
    stereo = torch.stack([torch.ones(800) * 0.2, torch.ones(800) * 0.4])  # [channels, time]
    mixed = load_audio(stereo, source_rate=8000)
    assert mixed.shape[0] == 1600
    assert mixed[100:-100].mean().item() == pytest.approx(0.3, abs=1e-3)


def test_silence_is_valid(tmp_path, write_wav):
    wav = load_audio(write_wav(tmp_path / "silence.wav", np.zeros(16000, dtype=np.float32), 16000))
    assert wav.shape == (16000,) and wav.abs().max() == 0


def test_error_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.wav: file not found"):
        load_audio(tmp_path / "nope.wav")


def test_error_corrupt_file(tmp_path):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage that is not audio")
    with pytest.raises(ValueError, match=r"corrupt\.wav: cannot decode audio"):
        load_audio(bad)


def test_error_zero_length(tmp_path, write_wav):
    path = write_wav(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match=r"empty\.wav: zero-length audio"):
        load_audio(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_error_nan_inf(bad):
    samples = np.zeros(1600, dtype=np.float32)
    samples[10] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        load_audio(samples, source_rate=16000)


def test_error_too_long(tmp_path, write_wav):
    path = write_wav(tmp_path / "long.wav", np.zeros(16000 * 3, dtype=np.float32), 16000)
    with pytest.raises(
        ValueError, match=r"long\.wav: audio is 3\.00 s long, longer than the limit of 2\.00 s"
    ):
        load_audio(path, max_seconds=2.0)
    assert load_audio(path, max_seconds=None).shape == (48000,)


@pytest.mark.parametrize("dtype", [np.complex64, np.int64, np.bool_])
def test_error_unsupported_dtype(dtype):
    with pytest.raises(ValueError, match="unsupported sample dtype"):
        load_audio(np.zeros(100, dtype=dtype), source_rate=16000)


def test_error_array_needs_rate():
    with pytest.raises(ValueError, match="source_rate is required"):
        load_audio(np.zeros(100, dtype=np.float32))
