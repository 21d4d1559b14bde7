"""The Whisper/S3 log-mel frontend against s3tokenizer and transformers, and batch exactness."""

import numpy as np
import pytest
import s3tokenizer
import torch
from funaudiochat.tokenizer import WhisperFrontend, log_mel_spectrogram, mel_frame_count


def test_matches_s3tokenizer_on_espeak_speech(speech_16k):
    for wav in speech_16k:
        ours = log_mel_spectrogram(wav)
        ref = s3tokenizer.log_mel_spectrogram(wav, n_mels=128)
        assert ours.shape == ref.shape == (128, mel_frame_count(wav.shape[0]))
        assert (ours - ref).abs().max().item() <= 1e-5


def test_batch_equals_items_alone(speech_16k):
    frontend = WhisperFrontend()
    mel, lengths = frontend.batch(speech_16k)
    assert mel.shape == (len(speech_16k), 128, int(lengths.max()))
    for i, wav in enumerate(speech_16k):
        alone = log_mel_spectrogram(wav)
        n = int(lengths[i])
        assert n == alone.shape[1]
        torch.testing.assert_close(mel[i, :, :n], alone, rtol=0, atol=1e-6)
        assert mel[i, :, n:].abs().max().item() == 0 if n < mel.shape[-1] else True


def test_short_and_silent_input():
    frontend = WhisperFrontend()
    mel, lengths = frontend(torch.zeros(2, 640), torch.tensor([640, 100]))
    assert lengths.tolist() == [4, 0]
    # all-silent audio: log10(1e-10) = -10 everywhere, so (x + 4) / 4 = -1.5
    torch.testing.assert_close(mel[0], torch.full((128, 4), -1.5))
    assert mel[1].abs().max() == 0


def test_relation_to_transformers_whisper_feature_extractor(speech_16k):
    """transformers' WhisperFeatureExtractor (feature_size=128) is the same frontend.

    With torch installed its call takes the torch path, which equals ours (0 difference measured on
    espeak-ng speech with ``padding="longest", truncation=False``). Its numpy path computes the STFT in
    numpy and differs by ~3e-5 (measured 2.6e-5). Its default call pads or cuts every input to 30 s
    (3000 frames), so lengths must be handled by the caller.
    """
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=128)
    wav = speech_16k[1]
    ours = log_mel_spectrogram(wav)
    kwargs = dict(sampling_rate=16000, padding="longest", truncation=False, return_tensors="pt")
    torch_path = fe(wav.numpy(), device="cpu", **kwargs).input_features[0]
    assert torch_path.shape == ours.shape
    assert (torch_path - ours).abs().max().item() <= 1e-6
    numpy_path = fe._np_extract_fbank_features(wav.numpy()[None].astype(np.float32), "cpu")[0]
    assert np.abs(numpy_path[:, : ours.shape[1]] - ours.numpy()).max() <= 1e-4
    default = fe(wav.numpy(), sampling_rate=16000, return_tensors="pt").input_features[0]
    assert default.shape == (128, 3000)


def test_zeros_tail_is_the_official_processors_whisper_feature_extractor(speech_16k):
    """``tail="zeros"`` gives what the official processor (and vLLM) feed the continuous encoder:
    ``WhisperFeatureExtractor(feature_size=128)`` called with ``padding="max_length"`` (the audio followed
    by zeros up to 30 s), its attention mask's ``ceil(len / 160)`` frames; for any length (the frames that
    overhang the end differ from the reflect tail's), alone or batched."""
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=128)
    frontend = WhisperFrontend(tail="zeros")
    wav = speech_16k[1]
    cuts = [wav[: 160 * 90 + r] for r in (0, 1, 10, 39, 40, 155)] + [wav[:250], wav]
    mel, lengths = frontend.batch(cuts)
    for i, cut in enumerate(cuts):
        ref = fe(
            cut.numpy(),
            sampling_rate=16000,
            padding="max_length",
            return_attention_mask=True,
            return_tensors="pt",
        )
        frames = int(ref["attention_mask"].sum())
        assert int(lengths[i]) == frames == mel_frame_count(cut.shape[0], "zeros")
        alone, _ = frontend(cut[None])
        torch.testing.assert_close(
            mel[i, :, :frames], ref["input_features"][0, :, :frames], rtol=0, atol=1e-5
        )
        torch.testing.assert_close(alone[0], mel[i, :, :frames], rtol=0, atol=1e-6)
    reflect, _ = WhisperFrontend().batch([cuts[2]])
    assert reflect.shape[-1] == 90 and (reflect[0, :, -1] - mel[2, :, 89]).abs().max() > 1e-3  # overhangs
    with pytest.raises(ValueError, match="tail must be one of"):
        WhisperFrontend(tail="mirror")


def test_rejects_bad_shapes():
    frontend = WhisperFrontend()
    with pytest.raises(ValueError, match=r"waveforms must be \[batch, samples\]"):
        frontend(torch.zeros(100))
    with pytest.raises(ValueError, match="lengths must lie in"):
        frontend(torch.zeros(1, 100), torch.tensor([200]))
    with pytest.raises(ValueError, match="must be 1-D"):
        log_mel_spectrogram(torch.zeros(2, 100))
