"""Token2Wav offline: lengths, segmenting with cross-fade, token and speaker validation."""

import warnings

import pytest
import torch
from funaudiochat.base import StreamState
from funaudiochat.vocoder.speakers import Speaker
from funaudiochat.vocoder.token2wav import Token2Wav, clean_tokens, plan_segments
from hypothesis import given
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def t2w():
    """The tiny random vocoder, made louder (a larger log-magnitude bias of HiFT's last conv): RMS about
    0.2, so that an absolute tolerance of 1e-5 on its audio is a tight one."""
    vocoder = Token2Wav.random(seed=0)
    with torch.no_grad():
        vocoder.hift.conv_post.bias[: vocoder.hift.config.istft_n_fft // 2 + 1] += 2.0
    return vocoder


def rms(wave: torch.Tensor) -> float:
    return float(wave.pow(2).mean().sqrt())


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


# ---- streaming ----


@pytest.mark.parametrize("voice", ["plain", "prompt"])
@pytest.mark.parametrize("pushes", [[100], [7] * 14 + [2], [1, 17, 40, 0, 42]])
@pytest.mark.parametrize("growth", [1, 2])
def test_stream_equals_chunk_causal_offline(t2w, voice, pushes, growth):
    """Stream with flow and HiFT caches == offline synthesis with the stream's chunk-causal attention
    (hops of 15 tokens, or 15, 30, 45, 45, ... with growth 2 up to 45)."""
    g = torch.Generator().manual_seed(3)
    codes = torch.randint(0, 6561, (sum(pushes),), generator=g)
    speaker = None
    if voice == "prompt":
        speaker = Speaker(
            torch.randn(192, generator=g), torch.randint(0, 6561, (6,), generator=g), torch.randn(12, 80)
        )
    longest = 45 if growth > 1 else None
    offline = t2w.synthesize(codes, speaker, chunk_tokens=15, chunk_growth=growth, max_chunk_tokens=longest)
    stream = t2w.stream(speaker, 15, context_tokens=None, hop_growth=growth, max_hop_tokens=longest)
    pieces, pos = [], 0
    for n in pushes[:-1]:
        pieces.append(stream.push(codes[pos : pos + n]))
        pos += n
    pieces.append(stream.finalize(codes[pos:]))
    joined = torch.cat(pieces)
    assert joined.shape == (len(codes) * 960,) and stream.samples == joined.numel()
    torch.testing.assert_close(joined, offline, rtol=0, atol=1e-5)
    assert rms(offline) > 0.1
    if growth > 1:  # longer chunks see further ahead: the audio after the first hop changes
        fixed = t2w.synthesize(codes, speaker, chunk_tokens=15)
        same = 12 * 960  # the first hop's mel is the same; HiFT's look-ahead mixes in the next 2 tokens'
        torch.testing.assert_close(offline[:same], fixed[:same], rtol=0, atol=1e-5)
        assert (offline - fixed).abs().max() > 5e-5  # (a tiny random flow: small, but 5x the tolerance)


def test_first_audio_after_one_hop_and_its_look_ahead(t2w):
    """Hop 15 + 3 look-ahead tokens: the first 30 mel frames are solved; HiFT then waits 4 frames of its
    own look-ahead (and 4 samples of iSTFT overlap) for the rest."""
    stream = t2w.stream(hop_tokens=15)
    assert stream.push(list(range(17))).numel() == 0
    first = stream.push([17])
    assert first.numel() == 480 * (30 - 4) - 4
    assert stream.push(list(range(15))).numel() == 30 * 480
    stream.finalize()
    with pytest.raises(ValueError, match="finalized"):
        stream.push([1])


def test_stream_edge_cases(t2w):
    assert t2w.stream().finalize().numel() == 0
    with pytest.warns(UserWarning, match="dropped 2 special"):
        assert t2w.stream().finalize([6561, 5, 6, 6562]).numel() == 2 * 960
    with pytest.raises(ValueError, match="hop_tokens must be >= 1"):
        t2w.stream(hop_tokens=0)
    with pytest.raises(ValueError, match="chunk_tokens must be a positive"):
        t2w.synthesize([1, 2], chunk_tokens=0)
    with pytest.raises(ValueError, match="hop_growth 2 needs max_hop_tokens"):
        t2w.stream(hop_growth=2)
    with pytest.raises(ValueError, match=r"max_hop_tokens \(10\) must be >= the first hop \(15\)"):
        t2w.stream(hop_growth=2, max_hop_tokens=10)
    with pytest.raises(ValueError, match="chunk_growth must be an integer >= 1"):
        t2w.synthesize([1, 2], chunk_tokens=5, chunk_growth=0)
    with pytest.raises(KeyError, match="unknown speaker"):
        t2w.stream("nobody")


@pytest.mark.parametrize("voice", ["plain", "prompt"])
def test_batched_streams_equal_their_own_streams(t2w, voice):
    """Three lockstep streams in one batch (different voices and codes): each row == its own stream."""
    g = torch.Generator().manual_seed(4)
    voices = []
    for _ in range(3):
        prompt = (torch.randint(0, 6561, (4,), generator=g), torch.randn(8, 80, generator=g))
        voices.append(
            Speaker(torch.randn(192, generator=g), *(prompt if voice == "prompt" else (None, None)))
        )
    codes = torch.randint(0, 6561, (3, 52), generator=g)
    pushes = [20, 0, 13, 19]
    state = t2w.init_state(3, voices, hop_tokens=15, hop_growth=2, max_hop_tokens=30)
    pieces, pos = [], 0
    for i, n in enumerate(pushes):
        pieces.append(t2w.step(codes[:, pos : pos + n], state, finalize=i == len(pushes) - 1))
        pos += n
    assert len(state.groups) == 1  # equal pushes: one lockstep cohort all along
    for row, speaker in enumerate(voices):
        joined = torch.cat([piece[row] for piece in pieces])
        assert joined.shape == (52 * 960,) and rms(joined) > 0.1
        alone = t2w.stream(speaker, hop_tokens=15, hop_growth=2, max_hop_tokens=30)
        own = torch.cat([alone.push(codes[row, :33]), alone.finalize(codes[row, 33:])])
        torch.testing.assert_close(joined, own, rtol=0, atol=1e-5)


def test_sessions_joining_later_and_a_reset_row_get_their_own_audio(t2w):
    """A session joins a running one 20 codes later, the two get different amounts of codes per step, and
    the first row is then reset to a new session: each row's audio equals its own chunk-causal synthesis."""
    g = torch.Generator().manual_seed(7)
    codes = [torch.randint(0, 6561, (n,), generator=g) for n in (47, 41, 29)]
    voices = [Speaker(torch.randn(192, generator=g)) for _ in range(3)]
    expected = [t2w.synthesize(c, v, chunk_tokens=15) for c, v in zip(codes, voices, strict=True)]
    got = {0: [], 1: [], 2: []}

    state = t2w.init_state(1, voices[0])
    got[0] += t2w.step(codes[0][:20], state)
    state = StreamState.cat([state, t2w.init_state(1, voices[1])])
    for a, b in (
        (slice(20, 30), slice(0, 10)),
        (slice(30, 33), slice(10, 24)),
        (slice(33, 47), slice(24, 30)),
    ):
        out = t2w.step([codes[0][a], codes[1][b]], state)
        got[0].append(out[0])
        got[1].append(out[1])
    got[0] += t2w.step([codes[0][:0]], state.select([0]), finalize=True)  # session 0 ends
    state.reset([True, False], t2w.init_state(1, voices[2]))  # its row takes a new session
    out = t2w.step([codes[2], codes[1][30:]], state, finalize=True)
    got[2].append(out[0])
    got[1].append(out[1])
    for row in range(3):
        joined = torch.cat(got[row])
        assert joined.shape == expected[row].shape and rms(expected[row]) > 0.1
        torch.testing.assert_close(joined, expected[row], rtol=0, atol=1e-5)


def test_batched_streams_refuse_bad_input(t2w):
    g = torch.Generator().manual_seed(5)
    a = Speaker(torch.randn(192, generator=g), torch.tensor([1, 2]), torch.randn(4, 80, generator=g))
    b = Speaker(torch.randn(192, generator=g), torch.tensor([1, 2, 3]), torch.randn(6, 80, generator=g))
    with pytest.raises(ValueError, match="voice prompts of the same length.*2 tokens / 4 frames, 3 tokens"):
        t2w.init_state(2, [a, b])
    with pytest.raises(ValueError, match="same length.*none"):
        t2w.init_state(2, [a, Speaker(torch.randn(192, generator=g))])
    with pytest.raises(ValueError, match="got 1 speakers for a batch of 2"):
        t2w.init_state(2, [a])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        t2w.init_state(0)
    with pytest.raises(ValueError, match="one session"):
        t2w.stream([a, b])
    pair = t2w.init_state(2, [None, "default"])
    with pytest.raises(ValueError, match="this batch has 2 streams; got codes for 3 rows"):
        t2w.step(torch.zeros(3, 5, dtype=torch.long), pair)
    with pytest.raises(ValueError, match=r"takes codes \[B, n\] or one sequence per row, got shape \[5\]"):
        t2w.step([1, 2, 3, 4, 5], pair)
    with pytest.raises(ValueError, match="takes the Cohorts made by init_state"):
        t2w.step([[1], [2]], pair.groups[0])
    with pytest.warns(UserWarning, match="dropped 2 special"):  # one per row: still lockstep
        out = t2w.step([[6562, 1, 2], [1, 6561, 2]], pair, finalize=True)
    assert [o.shape for o in out] == [(2 * 960,), (2 * 960,)] and len(pair.groups) == 1


def test_staggered_sessions_share_their_flow_and_hift_runs(t2w, monkeypatch):
    """Three sessions join 5 and 10 codes apart and then get 5 codes a step, as a server's sessions do:
    their flow chunks and (past their first chunk) their HiFT steps run together, and each session's audio
    equals its own stream's."""
    import funaudiochat.vocoder.hift_batch as hift_batch

    joined = []
    original = hift_batch._step_joined
    monkeypatch.setattr(hift_batch, "_step_joined", lambda *a: joined.append(len(a[2])) or original(*a))
    g = torch.Generator().manual_seed(11)
    codes = [torch.randint(0, 6561, (60,), generator=g) for _ in range(3)]
    voices = [Speaker(torch.randn(192, generator=g)) for _ in range(3)]
    state, got = None, {i: [] for i in range(3)}
    for step in range(14):
        for i in range(3):
            if step == 2 * i:  # session i joins at step 2 i (10 codes after the one before)
                fresh = t2w.init_state(1, voices[i], hop_tokens=5)
                state = fresh if state is None else StreamState.cat([state, fresh])
        rows = state.batch_size
        pushes = [codes[i][5 * (step - 2 * i) : 5 * (step - 2 * i + 1)] for i in range(rows)]
        for i, wave in enumerate(t2w.step(pushes, state)):
            got[i].append(wave)
    for i in range(3):
        got[i] += t2w.step([codes[i][5 * (14 - 2 * i) :]], state.select([i]), finalize=True)
    assert joined and max(joined) == 3  # HiFT stepped all three together
    for i in range(3):
        alone = t2w.stream(voices[i], hop_tokens=5)
        own = torch.cat([alone.push(codes[i]), alone.finalize()])
        torch.testing.assert_close(torch.cat(got[i]), own, rtol=0, atol=1e-5)
