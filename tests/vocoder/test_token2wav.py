"""Token2Wav offline: lengths, segmenting with cross-fade, token and speaker validation."""

import warnings

import pytest
import torch
from funaudiochat.vocoder.speakers import Speaker
from funaudiochat.vocoder.token2wav import Token2Wav, clean_tokens, plan_segments
from hypothesis import given
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def t2w():
    return Token2Wav.random(seed=0)


def test_length_is_960_samples_per_token(t2w):
    codes = torch.randint(0, 6561, (23,), generator=torch.Generator().manual_seed(0))
    wave = t2w.synthesize(codes)
    assert wave.shape == (23 * 960,) and wave.dtype == torch.float32
    assert torch.isfinite(wave).all() and wave.abs().max() <= 0.99


def test_specials_dropped_with_a_warning_and_bad_ids_refused(t2w):
    with pytest.warns(UserWarning, match="dropped 3 special speech ids"):
        ids = clean_tokens([6561, 6561, 5, 17, 6562])
    assert ids.tolist() == [5, 17]
    for bad in ([1, 6565], [-1, 3], [70000]):
        with pytest.raises(ValueError, match=r"speech tokens must lie in 0\.\.6560"):
            clean_tokens(bad)
    with pytest.raises(ValueError, match="must be integers"):
        clean_tokens(torch.tensor([1.0, 2.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert t2w.synthesize([]).shape == (0,)


def test_speakers(t2w):
    with pytest.raises(KeyError, match="unknown speaker 'nobody'; known speakers: 'default'"):
        t2w.synthesize([1, 2, 3], speaker="nobody")
    bad = torch.zeros(192)
    bad[0] = float("nan")
    with pytest.raises(ValueError, match="embedding contains NaN"):
        t2w.synthesize([1, 2, 3], speaker=bad)
    a = t2w.synthesize([1, 2, 3, 4], speaker=torch.ones(192))
    b = t2w.synthesize([1, 2, 3, 4], speaker=-torch.ones(192))
    assert not torch.allclose(a, b)
    cloned = t2w.synthesize(
        [1, 2, 3, 4], speaker=Speaker(torch.ones(192), torch.tensor([7, 8]), torch.randn(4, 80))
    )
    assert cloned.shape == a.shape


@given(n=st.integers(0, 400), seg=st.integers(10, 120), min_last=st.integers(1, 9))
def test_segments_cover_every_token_once(n, seg, min_last):
    segments = plan_segments(n, seg, min_last)
    if n == 0:
        assert segments == []
        return
    assert segments[0][0] == 0 and segments[-1][1] == n
    for (_, end), (start, _) in zip(segments, segments[1:], strict=False):
        assert end == start
    assert all(b - a <= seg for a, b in segments)
    if len(segments) > 1:
        assert all(b - a >= min(min_last, seg // 2) for a, b in segments)


def test_long_input_is_segmented_without_a_seam():
    t2w = Token2Wav.random(seed=1)
    t2w.segment_tokens, t2w.overlap_tokens, t2w.min_last_tokens = 30, 6, 10
    codes = torch.randint(0, 6561, (75,), generator=torch.Generator().manual_seed(1))
    wave = t2w.synthesize(codes)
    assert wave.shape == (75 * 960,)
    assert torch.isfinite(wave).all()
    jumps = (wave[1:] - wave[:-1]).abs()
    typical = float(jumps.quantile(0.99)) + 1e-6
    for boundary in (30, 60):  # segments [0,30) [30,60) [60,75), each synthesised with 6 tokens of lead
        lo, hi = (boundary - 6) * 960, boundary * 960
        # where the cross-fade starts and ends, the waveform moves no more than it does anywhere else
        assert abs(float(wave[lo] - wave[lo - 1])) <= typical
        assert abs(float(wave[hi] - wave[hi - 1])) <= typical
