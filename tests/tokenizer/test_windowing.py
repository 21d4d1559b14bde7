"""Long audio: the code count is a function of the duration alone; no token lost or duplicated."""

import numpy as np
import pytest
import s3tokenizer
import torch
from funaudiochat.tokenizer import SpeechTokenizer, SpeechTokenizerConfig, code_count, plan_windows
from funaudiochat.tokenizer.windowing import token_count_for_frames
from hypothesis import given, settings
from hypothesis import strategies as st
from s3tokenizer.model_v2 import ModelConfig, S3TokenizerV2


def test_code_count_formula():
    assert code_count(16000) == 25
    assert code_count(int(52.4 * 16000)) == 1310
    assert code_count(640) == 1  # 40 ms: 4 mel frames, one token
    assert code_count(159) == 0  # less than one mel frame
    assert code_count(161) == 1  # one frame still yields a (partial) token


@settings(max_examples=300, deadline=None)
@given(
    num_frames=st.integers(0, 60000),
    window_tokens=st.integers(20, 800),
    overlap_tokens=st.integers(1, 200),
)
def test_plan_covers_every_token_exactly_once(num_frames, window_tokens, overlap_tokens):
    window, overlap = 4 * window_tokens, 4 * min(overlap_tokens, window_tokens - 1)
    windows = plan_windows(num_frames, window, overlap)
    total = token_count_for_frames(num_frames)
    assert windows[0].keep_start == 0 and windows[-1].keep_end == total
    for a, b in zip(windows, windows[1:], strict=False):
        assert a.keep_end == b.keep_start and a.start_frame < b.start_frame
    for w in windows:
        assert w.start_frame % 4 == 0 and 0 < w.num_frames <= window or num_frames == 0
        assert w.start_frame + w.num_frames <= num_frames
        own_tokens = token_count_for_frames(w.num_frames)
        assert w.start_token <= w.keep_start <= w.keep_end <= w.start_token + own_tokens
    if len(windows) > 1:
        # every window is full (the last is never a short remainder) and every cut leaves context
        margin = (overlap // 4 - 1) // 2
        for a, b in zip(windows, windows[1:], strict=False):
            assert a.num_frames >= window - 3 and b.num_frames >= window - 3
            assert a.start_token + a.num_frames // 4 - a.keep_end >= margin
            assert b.keep_start - b.start_token >= margin


def test_plan_rejects_bad_settings():
    with pytest.raises(ValueError, match="multiples of 4"):
        plan_windows(100, 3001, 400)
    with pytest.raises(ValueError, match="overlap_frames must lie in"):
        plan_windows(100, 400, 400)


@pytest.fixture(scope="module")
def tiny_tokenizer():
    return SpeechTokenizer.random(SpeechTokenizerConfig(n_audio_state=64, n_audio_head=1, n_audio_layer=1))


@pytest.fixture(scope="module")
def long_speech(speech_16k):
    """About 130 s of speech: the espeak utterances repeated."""
    one = torch.cat(speech_16k)
    return one.repeat(int(np.ceil(130 * 16000 / one.shape[0])))


@settings(max_examples=25, deadline=None)
@given(seconds=st.floats(0.04, 120.0))
def test_code_count_is_a_function_of_duration(tiny_tokenizer, long_speech, seconds):
    n = int(seconds * 16000)
    codes = tiny_tokenizer.encode(long_speech[:n])[0]
    assert codes.shape[0] == code_count(n)
    assert codes.min() >= 0 and codes.max() < 6561


def test_windowed_codes_equal_unwindowed_for_a_local_model(long_speech):
    """With no attention blocks each code depends on a few mel frames only, so cutting into windows
    must give exactly the codes of one pass over the whole utterance: any lost, duplicated or shifted
    token would show."""
    tok = SpeechTokenizer.random(
        SpeechTokenizerConfig(n_audio_state=64, n_audio_head=1, n_audio_layer=0), seed=3
    )
    with torch.no_grad():
        tok.quantizer._codebook.project_down.weight.mul_(20.0)
    for seconds in (52.4, 61.7, 97.3):
        n = int(seconds * 16000)
        mel = tok.frontend.batch([long_speech[:n]])[0][0]
        with torch.inference_mode():
            hidden, _ = tok.encoder([mel])
            whole = tok.quantizer.encode(hidden)
        windowed = tok.encode(long_speech[:n])[0]
        assert len(plan_windows(mel.shape[1])) > 1
        assert torch.equal(windowed, whole)
        assert len(set(whole.tolist())) > 50


def test_the_package_loses_tokens_where_we_do_not(tiny_tokenizer, long_speech):
    """S3Tokenizer issue #53: s3tokenizer 0.3.0 gives 1260 codes for 52.4 s; the right count is 1310."""
    torch.manual_seed(0)
    ref = S3TokenizerV2(
        "speech_tokenizer_v2_25hz", ModelConfig(n_audio_state=64, n_audio_head=1, n_audio_layer=1)
    )
    n = int(52.4 * 16000)
    mel = s3tokenizer.log_mel_spectrogram(long_speech[:n]).unsqueeze(0)
    _, ref_len = ref.quantize(mel, torch.tensor([mel.shape[-1]]))
    assert int(ref_len[0]) == 1260
    assert tiny_tokenizer.encode(long_speech[:n])[0].shape[0] == 1310 == code_count(n)


def test_long_item_in_a_batch_equals_it_alone(tiny_tokenizer, long_speech, speech_16k):
    batch = [speech_16k[0], long_speech[: int(45.5 * 16000)], speech_16k[1]]
    together = tiny_tokenizer.encode(batch)
    for wav, codes in zip(batch, together, strict=True):
        assert torch.equal(codes, tiny_tokenizer.encode(wav)[0])
