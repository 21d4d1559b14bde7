"""``fast_decode.decode_one`` is the transformers Qwen3 forward for one position (through the extension's
``qwen3_decode_one`` on growing caches, else the Python reference), its products equal plain products, and
decoding with it gives the tokens of decoding through the model calls."""

import dataclasses

import pytest
import torch
from funaudiochat.drsr import DecodingConfig, SamplingConfig, generate
from funaudiochat.drsr.fast_decode import _stack_weights, decode_one, decode_one_reference, linear, supports
from funaudiochat.drsr.hf_compat import cache_kwargs
from funaudiochat.drsr.kv_cache import growing_cache
from funaudiochat.drsr.ops import extension_available
from transformers import DynamicCache

from .test_generation import batch_of, make_model, prompt


@pytest.fixture(scope="module")
def model():
    return make_model()


needs_extension = pytest.mark.skipif(not extension_available(), reason="the extension is not built")


@pytest.mark.parametrize("cache_kind", ["dynamic", pytest.param("growing", marks=needs_extension)])
@pytest.mark.parametrize("which", ["llm", "srh"])
def test_one_position_equals_the_model_forward(model, which, cache_kind, monkeypatch):
    """On a transformers ``DynamicCache`` the Python reference runs; on a growing cache the extension's op
    (watched: it must be called)."""
    backbone = model.language_model.model if which == "llm" else model.audio_invert_tower.crq_transformer
    assert supports(backbone)
    torch.manual_seed(0)
    b, p, d = 3, 9, backbone.config.hidden_size
    x = torch.randn(b, p, d)
    mask = torch.ones(b, p, dtype=torch.long)
    mask[1, :3] = 0  # left padding of other lengths
    mask[2, :5] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    reference = DynamicCache(config=backbone.config)
    fast = DynamicCache(config=backbone.config) if cache_kind == "dynamic" else growing_cache(backbone.config)
    calls = []
    op = torch.ops.funaudiochat.qwen3_decode_one if extension_available() else None
    monkeypatch.setattr(
        torch.ops.funaudiochat, "qwen3_decode_one", lambda *a: calls.append(1) or op(*a), raising=False
    )
    with torch.no_grad():
        for cache in (reference, fast):
            backbone(
                inputs_embeds=x,
                attention_mask=mask,
                position_ids=positions,
                **cache_kwargs(cache),
                use_cache=True,
            )
        for _ in range(3):
            new = torch.randn(b, 1, d)
            mask = torch.cat([mask, torch.ones(b, 1, dtype=torch.long)], dim=1)
            positions = positions[:, -1:] + 1
            want = backbone(
                inputs_embeds=new,
                attention_mask=mask,
                position_ids=positions,
                **cache_kwargs(reference),
                use_cache=True,
            ).last_hidden_state
            got = decode_one(backbone, new, mask, positions, fast)
            torch.testing.assert_close(got, want, rtol=0, atol=5e-6)
    assert len(calls) == (3 if cache_kind == "growing" else 0)
    for layer_ref, layer_fast in zip(reference.layers, fast.layers, strict=True):
        torch.testing.assert_close(layer_fast.keys, layer_ref.keys, rtol=0, atol=5e-6)
        torch.testing.assert_close(layer_fast.values, layer_ref.values, rtol=0, atol=5e-6)


@needs_extension
def test_the_op_in_bfloat16_matches_the_reference(model):
    """Other dtypes than float32 run the op's ATen statements: the reference's computation."""
    backbone = model.language_model.model
    torch.manual_seed(1)
    b, d = 2, backbone.config.hidden_size
    x = torch.randn(b, 6, d, dtype=torch.bfloat16)
    mask = torch.tensor([[0, 1, 1, 1, 1, 1], [1] * 6])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    try:
        backbone.to(torch.bfloat16)
        caches = [growing_cache(backbone.config), DynamicCache(config=backbone.config)]
        with torch.no_grad():
            for cache in caches:
                backbone(
                    inputs_embeds=x,
                    attention_mask=mask,
                    position_ids=positions,
                    **cache_kwargs(cache),
                    use_cache=True,
                )
            new = torch.randn(b, 1, d, dtype=torch.bfloat16)
            mask, positions = (
                torch.cat([mask, torch.ones(b, 1, dtype=torch.long)], dim=1),
                positions[:, -1:] + 1,
            )
            got = decode_one(backbone, new, mask, positions, caches[0])
            want = decode_one_reference(backbone, new, mask, positions, caches[1])
    finally:
        backbone.float()
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), rtol=0, atol=0.05)
    torch.testing.assert_close(caches[0].layers[0].keys, caches[1].layers[0].keys, rtol=0, atol=0.02)


@needs_extension
def test_reference_backend_runs_python(model, monkeypatch):
    """``FUNAUDIOCHAT_DRSR_OPS=reference`` keeps decoding off the extension."""
    monkeypatch.setenv("FUNAUDIOCHAT_DRSR_OPS", "reference")
    monkeypatch.setattr(torch.ops.funaudiochat, "qwen3_decode_one", None, raising=False)
    monkeypatch.setattr(torch.ops.funaudiochat, "rows_linear", None, raising=False)
    inputs = batch_of([prompt(model.config, 0.6, [317], seed=2)])
    out = generate(model, inputs, DecodingConfig(max_new_tokens=3))  # would call None on the extension path
    assert out.sequences.shape[1] == inputs["input_ids"].shape[1] + 3


@needs_extension
def test_the_op_refuses_bad_arguments(model):
    backbone = model.language_model.model
    cache = growing_cache(backbone.config)
    d = backbone.config.hidden_size
    with torch.no_grad():
        backbone(inputs_embeds=torch.randn(1, 4, d), **cache_kwargs(cache), use_cache=True)
    rooms = [layer.reserve(5) for layer in cache.layers]
    weights = [torch.zeros(1)] * 3
    keys, values = [r[0] for r in rooms], [r[1] for r in rooms]
    cos = sin = torch.zeros(1, 1, 1, backbone.config.head_dim)
    bias = torch.zeros(1, 1, 1, 5)
    op = torch.ops.funaudiochat.qwen3_decode_one
    with pytest.raises(RuntimeError, match="weights"):
        op(torch.randn(1, 1, d), weights, keys, values, 4, cos, sin, bias, 4, 2, 1e-6, 1.0)
    with pytest.raises(RuntimeError, match="embeds must be"):
        op(torch.randn(1, 2, d), weights, keys, values, 4, cos, sin, bias, 4, 2, 1e-6, 1.0)
    weights = _stack_weights(backbone)
    with pytest.raises(RuntimeError, match="room must be"):
        op(torch.randn(1, 1, d), weights, keys, values, 400, cos, sin, bias, 4, 2, 1e-6, 1.0)
    with pytest.raises(RuntimeError, match="bias must be"):
        op(torch.randn(1, 1, d), weights, keys, values, 3, cos, sin, bias, 4, 2, 1e-6, 1.0)
    with pytest.raises(RuntimeError, match="multiple of num_kv_heads"):
        op(torch.randn(1, 1, d), weights, keys, values, 4, cos, sin, bias, 3, 2, 1e-6, 1.0)
    # sizes the float32 loops read by pointer: refused, never read past the end
    with pytest.raises(RuntimeError, match="bias must be"):
        op(torch.randn(1, 1, d), weights, keys, values, 4, cos, sin, torch.zeros(2, 1, 1, 5), 4, 2, 1e-6, 1.0)
    with pytest.raises(RuntimeError, match="cos and sin must be"):
        op(torch.randn(1, 1, d), weights, keys, values, 4, cos[..., :4], sin, bias, 4, 2, 1e-6, 1.0)
    short = list(weights)
    short[4] = short[4][:3]  # layer 0's q norm
    with pytest.raises(RuntimeError, match="q/k norm"):
        op(torch.randn(1, 1, d), short, keys, values, 4, cos, sin, bias, 4, 2, 1e-6, 1.0)
    short = list(weights)
    short[-1] = short[-1][:3]
    with pytest.raises(RuntimeError, match="final norm"):
        op(torch.randn(1, 1, d), short, keys, values, 4, cos, sin, bias, 4, 2, 1e-6, 1.0)


def test_decoding_with_it_gives_the_same_tokens(model):
    inputs = batch_of(
        [prompt(model.config, 1.3, [317, 20, 10], seed=1), prompt(model.config, 0.6, [317], seed=2)]
    )
    for base in (
        DecodingConfig(max_new_tokens=20, speech=SamplingConfig(do_sample=False, repetition_penalty=1.2)),
        DecodingConfig(max_new_tokens=20, text=SamplingConfig(do_sample=True), seed=[3, 4]),
    ):
        fast = generate(model, inputs, dataclasses.replace(base, fast_decode=True))
        slow = generate(model, inputs, dataclasses.replace(base, fast_decode=False))
        assert torch.equal(fast.sequences, slow.sequences)
        assert all(torch.equal(a, b) for a, b in zip(fast.speech_ids, slow.speech_ids, strict=True))


def test_it_applies_only_where_it_computes_the_same(model):
    backbone = model.language_model.model
    backbone.train()
    try:
        assert not supports(backbone)  # dropout
    finally:
        backbone.eval()
    assert not supports(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("backend", ["reference", pytest.param("extension", marks=needs_extension)])
@pytest.mark.parametrize("rows, n", [(1, 6565), (3, 512), (1, 130), (2, 96), (20, 64)])
def test_products_equal_the_plain_product(rows, n, backend, monkeypatch):
    """``linear`` (the extension's row-split product, or the column-split batched product of the
    reference backend) equals ``F.linear`` to float rounding at any thread count; 20 rows exceed the
    extension's row limit (a plain product)."""
    monkeypatch.setenv("FUNAUDIOCHAT_DRSR_OPS", backend)
    g = torch.Generator().manual_seed(n)
    x, w = torch.randn(rows, 1, 256, generator=g), torch.randn(n, 256, generator=g)
    threads = torch.get_num_threads()
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            with torch.no_grad():
                got = linear(x, w)
                strided = linear(x.transpose(0, 1), w)  # not contiguous
            torch.testing.assert_close(got, torch.nn.functional.linear(x, w), rtol=0, atol=2e-5)
            torch.testing.assert_close(strided, got.transpose(0, 1), rtol=0, atol=2e-5)
            assert got.shape == (rows, 1, n)
    finally:
        torch.set_num_threads(threads)


@needs_extension
def test_row_product_falls_back_outside_its_case():
    """Other dtypes, gradients and non-contiguous weights go to a plain product, with the same result."""
    op = torch.ops.funaudiochat.rows_linear
    x, w = torch.randn(2, 64), torch.randn(96, 64)
    assert torch.equal(op(x.double(), w.double()), torch.nn.functional.linear(x.double(), w.double()))
    torch.testing.assert_close(op(x, w.t().contiguous().t()), x @ w.T, rtol=0, atol=2e-5)
    w.requires_grad_(True)
    out = op(x, w)
    assert out.requires_grad is False or out.grad_fn is not None
    with pytest.raises(RuntimeError, match=r"x \[\.\.\., K\] and weight \[N, K\]"):
        op(torch.randn(2, 63), w.detach())
