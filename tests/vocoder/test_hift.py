"""HiFT: CosyVoice3 state-dict layout, lengths, causality (a prefix run equals the start of the full run)."""

import pytest
import torch
from funaudiochat.vocoder import HiFTConfig, HiFTGenerator, SourceNoise


@pytest.fixture(scope="module")
def hift():
    torch.manual_seed(0)
    model = HiFTGenerator(HiFTConfig.tiny()).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "original1" in name or name.endswith("weight"):
                p.normal_(0, 0.1)
    return model


def test_full_size_layout():
    with torch.device("meta"):
        model = HiFTGenerator()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["conv_pre.parametrizations.weight.original1"] == (512, 80, 5)
    assert shapes["conv_pre.parametrizations.weight.original0"] == (512, 1, 1)
    assert shapes["ups.0.parametrizations.weight.original1"] == (256, 512, 16)
    assert shapes["ups.2.parametrizations.weight.original1"] == (64, 128, 7)
    assert shapes["source_downs.0.weight"] == (256, 18, 30)
    assert shapes["source_downs.1.weight"] == (128, 18, 6)
    assert shapes["source_downs.2.weight"] == (64, 18, 1)
    assert shapes["source_resblocks.2.convs1.0.parametrizations.weight.original1"] == (64, 64, 11)
    assert shapes["resblocks.8.activations2.2.alpha"] == (64,)
    assert shapes["conv_post.parametrizations.weight.original1"] == (18, 64, 7)
    assert shapes["m_source.l_linear.weight"] == (1, 9)
    assert shapes["f0_predictor.condnet.0.parametrizations.weight.original1"] == (512, 80, 4)
    assert shapes["f0_predictor.condnet.8.parametrizations.weight.original1"] == (512, 512, 3)
    assert shapes["f0_predictor.classifier.weight"] == (1, 512)


def test_lengths(hift):
    mel = torch.randn(2, 80, 30)
    wave, source = hift.inference(mel)
    assert wave.shape == (2, 480 * 30) and source.shape == (2, 1, 480 * 30)
    assert wave.abs().max() <= 0.99
    wave, source = hift.inference(mel, finalize=False)
    # F0 look-ahead 3 frames, conv_pre look-ahead 4, and the last frame's 480 samples held back
    assert source.shape == (2, 1, 480 * 27) and wave.shape == (2, 480 * (30 - 3 - 4 - 1))


def test_inverse_stft_takes_bf16_frames(hift):
    """Mixed-precision training hands the inverse STFT bf16 frames; it computes in float32."""
    n = hift.config.istft_n_fft // 2 + 1
    magnitude, phase = torch.rand(1, n, 12) * 2, torch.rand(1, n, 12) * 6 - 3
    want = hift._istft(magnitude, phase)
    got = hift._istft(magnitude.bfloat16(), phase.bfloat16())
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert (got - want).abs().max() < 0.05 * want.abs().max()


def test_prefix_run_equals_the_start_of_the_full_run(hift):
    """Causal: what a prefix yields (finalize=False) is final; it equals the full run's first samples."""
    torch.manual_seed(1)
    mel = torch.randn(1, 80, 60)
    full, _ = hift.inference(mel, noise=SourceNoise(9, seed=3))
    for cut in (20, 41):
        part, _ = hift.inference(mel[:, :, :cut], finalize=False, noise=SourceNoise(9, seed=3))
        assert part.shape[1] == 480 * (cut - 8)
        torch.testing.assert_close(part, full[:, : part.shape[1]], rtol=0, atol=2e-5)


def test_source_noise_is_position_consistent():
    noise = SourceNoise(9, seed=7)
    whole = noise.noise(0, 60000)
    assert torch.equal(noise.noise(23000, 2000), whole[23000:25000])
    assert torch.equal(SourceNoise(9, seed=7).noise(50000, 10), whole[50000:50010])
    assert noise.phases()[0] == 0 and (noise.phases()[1:] > 0).all()
    fixed = SourceNoise(9, noise=torch.rand(100, 9), phases=torch.zeros(9))
    with pytest.raises(ValueError, match="covers 100 samples"):
        fixed.noise(90, 20)


# ---- streaming: HiFTGenerator.init_state / step (causal-conv caches, phase accumulator, STFT/iSTFT) ----


@pytest.fixture(scope="module")
def voiced_hift():
    """The tiny HiFT with an F0 head scaled up so most frames are voiced (the sine path is exercised)."""
    torch.manual_seed(0)
    model = HiFTGenerator(HiFTConfig.tiny()).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "original1" in name or name.endswith("weight"):
                p.normal_(0, 0.1)
        model.f0_predictor.classifier.weight.mul_(2000)
        model.f0_predictor.classifier.bias.fill_(30)
    return model


def run_stream(model, mel, chunks, seed=3):
    state = model.init_state(mel.shape[0], SourceNoise(9, seed=seed))
    outs, pos = [], 0
    for i, size in enumerate(chunks):
        wave = model.step(mel[:, :, pos : pos + size], state, finalize=i == len(chunks) - 1)
        outs.append(torch.stack(wave))
        pos += size
    return outs


@pytest.mark.parametrize("chunks", [[47], [10, 37], [1, 2, 3, 4, 5, 6, 7, 8, 11], [0, 20, 0, 27]])
def test_stream_equals_offline(voiced_hift, chunks):
    torch.manual_seed(2)
    mel = torch.randn(2, 80, 47)
    full, _ = voiced_hift.inference(mel, noise=SourceNoise(9, seed=3))
    outs = run_stream(voiced_hift, mel, chunks)
    torch.testing.assert_close(torch.cat(outs, dim=1), full, rtol=0, atol=1e-6)


def test_stream_emits_every_determined_sample(voiced_hift):
    """After R frames (not final) the stream has given 480 (R - 4) - 4 samples: conv_pre's 4 frames of
    look-ahead and the iSTFT overlap are all it waits for."""
    mel = torch.randn(1, 80, 30)
    outs = run_stream(voiced_hift, mel, [10, 10, 10])
    assert [o.shape[1] for o in outs] == [480 * 6 - 4, 4800, 480 * 30 - (480 * 16 - 4)]


def test_long_stream_keeps_the_harmonic_phase(voiced_hift):
    """20 s of mel in 800 ms hops: the float64 phase accumulator keeps the stream on the offline result."""
    torch.manual_seed(4)
    mel = torch.randn(1, 80, 1000) * 0.1
    full, _ = voiced_hift.inference(mel, noise=SourceNoise(9, seed=5))
    outs = run_stream(voiced_hift, mel, [40] * 25, seed=5)
    torch.testing.assert_close(torch.cat(outs, dim=1), full, rtol=0, atol=1e-5)


def test_stream_refuses_bad_input(voiced_hift):
    state = voiced_hift.init_state(2)
    with pytest.raises(ValueError, match=r"mel must be \[B=2, 80, frames\]"):
        voiced_hift.step(torch.randn(1, 80, 5), state)
    voiced_hift.step(torch.randn(2, 80, 5), state, finalize=True)
    with pytest.raises(ValueError, match="finalized"):
        voiced_hift.step(torch.randn(2, 80, 5), state)


def test_streams_at_different_positions_join_and_reset_as_cohorts(voiced_hift):
    """Row 0 streams 9 frames alone, row 1 joins at its start, row 0 is reset to a new stream later:
    each row's audio equals its own offline run."""
    from funaudiochat.base import Cohorts, StreamState

    torch.manual_seed(6)
    mels = torch.randn(3, 80, 30)
    noise = SourceNoise(9, seed=3)
    offline = [voiced_hift.inference(mels[i : i + 1], noise=noise)[0][0] for i in range(3)]
    first = voiced_hift.init_state(1, noise)
    got = {0: voiced_hift.step(mels[:1, :, :9], first), 1: [], 2: []}
    state = StreamState.cat([Cohorts.of(first), Cohorts.of(voiced_hift.init_state(1, noise))])
    out = voiced_hift.step([mels[0, :, 9:20], mels[1, :, :11]], state)
    got[0] += out[:1]
    got[1] += out[1:]
    got[0] += voiced_hift.step([mels[0, :, 20:]], state.select([0]), finalize=True)
    state.reset([True, False], Cohorts.of(voiced_hift.init_state(1, noise)))
    out = voiced_hift.step([mels[2], mels[1, :, 11:]], state, finalize=True)
    got[2] += out[:1]
    got[1] += out[1:]
    for row in range(3):
        torch.testing.assert_close(torch.cat(got[row]), offline[row], rtol=0, atol=1e-6)
    assert min(o.abs().max() for o in offline) > 0.05  # a real signal: 1e-6 is a tight tolerance


def per_sample_source(source, f0, noise, start=0, phase=None):
    """The harmonic source computed per output sample, the way the reference code does: f0 repeated over
    each frame, phase increments down-sampled linearly to frames, summed, up-sampled by nearest neighbour."""
    import math

    import torch.nn.functional as F

    f0 = f0.repeat_interleave(source.frame, dim=1)
    multiples = torch.arange(1, source.harmonics + 1, dtype=f0.dtype)
    cycles = (f0[:, :, None] * multiples / source.sampling_rate) % 1
    if start == 0:
        cycles[:, 0, :] = cycles[:, 0, :] + noise.phases().to(cycles)
    per_frame = F.interpolate(cycles.transpose(1, 2), scale_factor=1 / source.frame, mode="linear")
    if phase is not None:
        per_frame = torch.cat((phase.to(per_frame)[:, :, None], per_frame), dim=2)
    total = torch.cumsum(per_frame, dim=2)[:, :, 0 if phase is None else 1 :]
    angle = F.interpolate(total * 2 * math.pi * source.frame, scale_factor=source.frame, mode="nearest")
    sines = torch.sin(angle.transpose(1, 2)) * source.alpha
    voiced = (f0 > source.threshold).to(sines.dtype)[:, :, None]
    amplitude = voiced * source.sigma + (1 - voiced) * source.alpha / 3
    sines = sines * voiced + amplitude * noise.noise(start, f0.shape[1]).to(sines)[None]
    return torch.tanh(source.l_linear(sines.float())), total[:, :, -1]


@pytest.mark.parametrize("frame", [1, 2, 3, 480])
def test_frame_rate_source_equals_the_per_sample_reference(frame):
    """HarmonicSource makes the sines once per frame; the reference's per-sample computation gives the
    same excitation (the initial phases reach the output only for 1- and 2-sample frames), whole or
    streamed in pieces with the carried phase."""
    from funaudiochat.vocoder.nsf import HarmonicSource

    torch.manual_seed(frame)
    source = HarmonicSource(HiFTConfig(upsample_rates=[frame], istft_hop_len=1)).eval()
    f0 = torch.rand(2, 37, dtype=torch.float64) * 400
    f0[:, 5:9] = 0.0  # unvoiced frames
    noise = SourceNoise(source.harmonics, seed=3)
    with torch.no_grad():
        want, want_phase = per_sample_source(source, f0, noise)
        got, got_phase = source(f0, noise)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        torch.testing.assert_close(got_phase, want_phase, rtol=0, atol=1e-9)
        pieces, phase, position = [], None, 0
        for part in f0.split([10, 1, 26], dim=1):
            out, phase = source(part, noise, position, phase)
            pieces.append(out)
            position += out.shape[1]
        torch.testing.assert_close(torch.cat(pieces, dim=1), want, rtol=0, atol=1e-6)


def test_kept_kernels_follow_weight_changes():
    """Inference keeps the weight-normed kernels between calls; changing a parameter in place (an optimizer
    step, a state-dict load) must be seen by the next call, offline and streamed."""
    torch.manual_seed(5)
    model = HiFTGenerator(HiFTConfig.tiny()).eval()
    mel = torch.randn(1, 80, 12)
    before, _ = model.inference(mel, noise=SourceNoise(9))
    with torch.no_grad():
        model.resblocks[0].convs1[0].parametrizations.weight.original0.mul_(3.0)  # the gain
    after, _ = model.inference(mel, noise=SourceNoise(9))
    fresh = HiFTGenerator(HiFTConfig.tiny()).eval()
    fresh.load_state_dict(model.state_dict())
    expected, _ = fresh.inference(mel, noise=SourceNoise(9))
    assert not torch.allclose(after, before, atol=1e-4)
    torch.testing.assert_close(after, expected, rtol=0, atol=1e-6)
    streamed = torch.stack(model.step(mel, model.init_state(1, SourceNoise(9)), finalize=True))
    torch.testing.assert_close(streamed, expected, rtol=0, atol=1e-4)
