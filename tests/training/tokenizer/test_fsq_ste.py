"""The straight-through FSQ: the forward pass is the inference quantiser, bit for bit; gradients pass."""

import torch
from funaudiochat.tokenizer import SpeechTokenizer, SpeechTokenizerConfig
from funaudiochat.training.tokenizer import fsq_straight_through


def _codebook():
    return SpeechTokenizer.random(SpeechTokenizerConfig.tiny(), seed=3).quantizer._codebook


def test_forward_equals_inference_quantiser():
    codebook = _codebook()
    generator = torch.Generator().manual_seed(0)
    hidden = torch.cat(
        [scale * torch.randn(4000, 128, generator=generator) for scale in (0.01, 0.3, 1.0, 5.0)]
    )
    q, codes = fsq_straight_through(codebook.project_down, hidden)
    with torch.no_grad():
        assert torch.equal(q + 1, codebook.levels(hidden))
        assert torch.equal(codes, codebook.encode(hidden))
    assert set(q.unique().tolist()) == {-1.0, 0.0, 1.0}
    assert codes.min() >= 0 and codes.max() < 6561


def test_values_at_the_rounding_boundary():
    # tanh(h) * 0.999 exactly around +-0.5: the decision is that of FSQCodebook.levels
    codebook = _codebook()
    with torch.no_grad():
        codebook.project_down.weight.zero_()
        codebook.project_down.weight[:, 0] = 1.0
        codebook.project_down.bias.zero_()
    boundary = torch.atanh(torch.tensor(0.5 / 0.999))
    x = torch.zeros(9, 128)
    x[:, 0] = boundary + torch.linspace(-4e-7, 4e-7, 9)
    x = torch.cat([x, -x])
    q, _ = fsq_straight_through(codebook.project_down, x)
    assert torch.equal(q + 1, codebook.levels(x))
    assert set(q[:, 0].tolist()) == {-1.0, 0.0, 1.0}  # both sides of both boundaries are hit


def test_gradients_pass_straight_through():
    codebook = _codebook()
    hidden = torch.randn(50, 128, requires_grad=True)
    weights = torch.randn(50, 8)
    q, _ = fsq_straight_through(codebook.project_down, hidden)
    (q * weights).sum().backward()
    grad_ste = hidden.grad.clone()
    assert codebook.project_down.weight.grad.abs().sum() > 0

    # the same as the gradient of the un-rounded tanh(.) * 0.999
    hidden.grad = None
    soft = codebook.project_down(hidden).tanh() * 0.999
    (soft * weights).sum().backward()
    torch.testing.assert_close(grad_ste, hidden.grad)


def test_codes_under_mixed_precision_match_float32_inference():
    codebook = _codebook()
    hidden = torch.randn(2000, 128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, codes = fsq_straight_through(codebook.project_down, hidden)
    assert torch.equal(codes, codebook.encode(hidden))
