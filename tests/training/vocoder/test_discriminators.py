"""Discriminator shapes, and the GAN and reconstruction losses at their known optima."""

from dataclasses import replace

import pytest
import torch
from funaudiochat.training.vocoder import (
    DiscriminatorConfig,
    MelReconstructionLoss,
    VocoderDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from funaudiochat.training.vocoder.discriminators import _OneChannelConv, conv_channels_last


@pytest.fixture(scope="module")
def disc():
    torch.manual_seed(0)
    return VocoderDiscriminator(DiscriminatorConfig.tiny())


def test_shapes(disc):
    wave = torch.randn(2, 4801) * 0.1  # not a multiple of any period: reflect-padded
    logits, features = disc(wave)
    assert len(logits) == len(features) == 5 + 3
    for i, period in enumerate([2, 3, 5, 7, 11]):
        folded = -(-4801 // period)
        assert features[i][0].shape == (2, 4, -(-folded // 3), period)
        assert len(features[i]) == 6 and logits[i].shape[0] == 2
        assert logits[i].shape[1] == features[i][-1][0].numel()
    for i, (n_fft, hop, _) in enumerate(DiscriminatorConfig().resolutions, start=5):
        assert features[i][0].shape == (2, 4, 4801 // hop + 1, n_fft // 2 + 1)
        assert len(features[i]) == 6 and logits[i].ndim == 2


def test_full_size_widths():
    with torch.device("meta"):
        full = VocoderDiscriminator()
    shapes = {k: tuple(v.shape) for k, v in full.state_dict().items()}
    assert shapes["mpd.discriminators.0.convs.3.parametrizations.weight.original1"] == (1024, 512, 5, 1)
    assert shapes["mrd.discriminators.2.conv_post.parametrizations.weight.original1"] == (1, 32, 3, 3)


def test_gradients_reach_the_wave(disc):
    wave = (torch.randn(1, 4800) * 0.1).requires_grad_()
    logits, features = disc(wave)
    generator_adversarial_loss(logits).backward()
    assert torch.isfinite(wave.grad).all() and wave.grad.abs().sum() > 0


def test_channels_last_is_the_same_discriminator():
    """The channels-last path (the default) gives the plain NCHW path's logits, features and gradients."""
    torch.manual_seed(0)
    fast = VocoderDiscriminator(DiscriminatorConfig.tiny())
    plain = VocoderDiscriminator(replace(DiscriminatorConfig.tiny(), channels_last=False))
    plain.load_state_dict(fast.state_dict())
    wave = torch.randn(2, 4801) * 0.1
    grads = []
    for d in (fast, plain):
        x = wave.clone().requires_grad_()
        logits, features = d(x)
        loss = generator_adversarial_loss(logits) + sum(f.square().mean() for fs in features for f in fs)
        loss.backward()
        grads.append((logits, features, x.grad, [p.grad for p in d.parameters()]))
    (l1, f1, x1, p1), (l2, f2, x2, p2) = grads
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(l1, l2, strict=True))
    pairs = [(a, b) for fa, fb in zip(f1, f2, strict=True) for a, b in zip(fa, fb, strict=True)]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in pairs)
    assert torch.allclose(x1, x2, rtol=1e-4, atol=1e-7) and x1.abs().sum() > 0
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(p1, p2, strict=True))
    assert f1[5][1].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(("kernel", "stride", "padding"), [((3, 9), 1, (1, 4)), ((5, 1), (3, 1), (2, 0))])
@pytest.mark.parametrize("height", [10, 11, 12])  # strides that end on, before and past the last row
def test_one_channel_conv_gradients(kernel, stride, padding, height):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 3, kernel, stride, padding).double()
    x = torch.randn(2, 1, height, 7, dtype=torch.double, requires_grad=True)
    assert torch.equal(conv_channels_last(conv, x), conv(x))
    run = lambda x, w, b: _OneChannelConv.apply(x, w, b, conv.stride, conv.padding, conv.dilation)  # noqa: E731
    assert torch.autograd.gradcheck(run, (x, conv.weight, conv.bias))


def test_one_channel_conv_under_bf16_autocast_gives_float32_gradients():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 3, (5, 1), (3, 1), (2, 0))
    x = torch.randn(2, 1, 12, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv_channels_last(conv, x)
    assert out.dtype == torch.bfloat16
    out.float().square().sum().backward()
    got = [x.grad, conv.weight.grad, conv.bias.grad]
    assert [g.dtype for g in got] == [torch.float32] * 3
    x.grad = conv.weight.grad = conv.bias.grad = None
    conv(x).square().sum().backward()
    want = [x.grad, conv.weight.grad, conv.bias.grad]
    assert all(torch.allclose(a, b, rtol=0.05, atol=0.05) for a, b in zip(got, want, strict=True))


def test_lsgan_optima():
    ones = [torch.ones(2, 7), torch.ones(2, 3)]
    zeros = [torch.zeros(2, 7), torch.zeros(2, 3)]
    assert discriminator_loss(ones, zeros) == 0
    assert generator_adversarial_loss(ones) == 0
    assert discriminator_loss(zeros, ones) == pytest.approx(4.0)  # (1 + 1) per discriminator
    assert generator_adversarial_loss(zeros) == pytest.approx(2.0)


def test_feature_matching_and_mel_loss():
    torch.manual_seed(0)
    feats = [[torch.randn(2, 4, 5), torch.randn(2, 1, 5)]]
    assert feature_matching_loss(feats, feats) == 0
    shifted = [[f + 0.5 for f in feats[0]]]
    assert feature_matching_loss(feats, shifted) == pytest.approx(1.0)
    wave = torch.randn(2, 4800) * 0.1
    loss = MelReconstructionLoss()
    assert loss(wave, wave) == 0
    assert loss(wave * 0.5, wave) > 0.5
    with pytest.raises(ValueError, match="shape"):
        loss(wave[:, :-480], wave)


def test_config_errors():
    with pytest.raises(ValueError, match="periods"):
        DiscriminatorConfig(periods=[0, 2])
    with pytest.raises(ValueError, match="resolution"):
        DiscriminatorConfig(resolutions=[[512, 50, 1024]])
    with pytest.raises(ValueError, match="non-empty"):
        discriminator_loss([], [])
