"""``conv.conv1d``: the channels-last layout, a batch-1 signal cut into pieces run as one batch, and a weight
packed for oneDNN give what ``F.conv1d`` gives; a module that kept packed weights still copies."""

import pytest
import torch
import torch.nn.functional as F
from funaudiochat.vocoder.conv import conv1d, pack_weight, pieces_for
from hypothesis import example, given, settings
from hypothesis import strategies as st


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 2),
    length=st.integers(1, 300),
    kernel=st.integers(1, 7),
    dilation=st.integers(1, 4),
    stride=st.integers(1, 4),
    groups=st.sampled_from([1, 2]),
    pieces=st.integers(1, 6),
    channels_last=st.sampled_from([None, True, False]),
    pad=st.tuples(st.integers(0, 12), st.integers(0, 12)),
    seed=st.integers(0, 2**16),
)
# oneDNN segfaulted on these (stride and dilation both above 1, a short padded signal): packed, channels-last
@example(1, 1, 1, 2, 2, 2, 1, None, (1, 0), 0)
@example(1, 1, 2, 2, 2, 2, 1, True, (3, 0), 0)
@example(1, 2, 1, 3, 3, 2, 1, True, (1, 1), 0)
def test_every_way_equals_one_convolution(
    batch, length, kernel, dilation, stride, groups, pieces, channels_last, pad, seed
):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, length, generator=gen)
    weight = torch.randn(6, 4 // groups, kernel, generator=gen)
    bias = torch.randn(6, generator=gen)
    span = dilation * (kernel - 1) + 1
    if pad[1] > pad[0] and stride > 1:
        with pytest.raises(ValueError, match="needs stride 1"):
            conv1d(x, weight, bias, stride, dilation, groups, pad)
        return
    if length + sum(pad) < span:
        with pytest.raises(RuntimeError):
            F.conv1d(F.pad(x, pad), weight, bias, stride, 0, dilation, groups)
        return
    expected = F.conv1d(F.pad(x, pad), weight, bias, stride, 0, dilation, groups)
    got = conv1d(x, weight, bias, stride, dilation, groups, pad, pieces=pieces, channels_last=channels_last)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    packed = pack_weight(weight, stride, dilation, groups)
    with torch.no_grad():
        got = conv1d(x, weight, bias, stride, dilation, groups, pad, packed=packed)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_gradients_equal_one_convolution():
    torch.manual_seed(0)
    x = torch.randn(1, 8, 500, requires_grad=True)
    weight = torch.randn(8, 8, 5, requires_grad=True)
    grads = []
    for pieces, channels_last in ((1, False), (3, False), (1, True)):
        y = conv1d(x, weight, None, dilation=2, pieces=pieces, channels_last=channels_last)
        grads.append(torch.autograd.grad((y * torch.linspace(-1, 1, y.shape[2])).sum(), (x, weight)))
    for other in grads[1:]:
        for a, b in zip(grads[0], other, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-4)


def test_pieces_follow_the_idle_threads_and_the_work():
    big = 16 * 16 * 11  # HiFT's last stage: 16 channels, kernel 11
    assert pieces_for(1, 24000, big, threads=2) == 2
    assert pieces_for(1, 24000, big, threads=16) == 16
    assert pieces_for(4, 24000, big, threads=2) == 1  # the batch already feeds every thread
    assert pieces_for(1, 24000, big, threads=1) == 1
    assert pieces_for(1, 100, big, threads=2) == 1  # too little work to share


def test_short_dilated_signal_matches_the_native_kernel():
    """A short batch-1 dilated convolution goes to oneDNN (PyTorch's own kernel is slow there)."""
    torch.manual_seed(1)
    x, weight, bias = torch.randn(1, 64, 258), torch.randn(64, 64, 7), torch.randn(64)
    with torch.inference_mode():
        got = conv1d(x, weight, bias, dilation=3, pieces=1)
    torch.testing.assert_close(got, F.conv1d(x, weight, bias, dilation=3), rtol=1e-5, atol=1e-4)


def test_narrow_layers_chain_in_channels_last_memory():
    """A narrow layer's output keeps channels-last memory, so the next one reads it without a copy, and a
    wide layer takes it too."""
    torch.manual_seed(2)
    x = torch.randn(1, 16, 1000)
    w16, w64 = torch.randn(16, 16, 7), torch.randn(64, 16, 3)
    y = conv1d(x, w16, None, dilation=3)
    assert y.transpose(1, 2).is_contiguous()  # [B, T, C] memory
    z = conv1d(torch.sin(y) + y, w16)
    assert z.transpose(1, 2).is_contiguous()
    wide = conv1d(z, w64)
    reference = F.conv1d(torch.sin(F.conv1d(x, w16, dilation=3)) + F.conv1d(x, w16, dilation=3), w16)
    expected = F.conv1d(reference, w64)
    torch.testing.assert_close(wide, expected, rtol=0, atol=1e-5 * float(expected.abs().max()))


def test_modules_with_kept_weights_copy_and_pickle():
    """Packed oneDNN weights cannot be copied: a copy or pickle starts without its kept values, and computes
    the same."""
    import copy
    import pickle

    from funaudiochat.vocoder import CausalFlowMatching, FlowConfig

    torch.manual_seed(0)
    flow = CausalFlowMatching(FlowConfig.tiny()).eval()
    tokens, speaker = torch.randint(0, 6561, (1, 12)), torch.randn(1, 192)
    with torch.inference_mode():
        mel, _ = flow.inference(tokens, speaker)
    assert any("_kept_packed" in m.__dict__ for m in flow.modules())
    for twin in (copy.deepcopy(flow), pickle.loads(pickle.dumps(flow))):
        with torch.inference_mode():
            torch.testing.assert_close(twin.inference(tokens, speaker)[0], mel, rtol=0, atol=0)
