"""``fast_decode.decode_one`` is the transformers Qwen3 forward for one position, and decoding with it gives
the tokens of decoding through the model calls."""

import dataclasses

import pytest
import torch
from funaudiochat.drsr import DecodingConfig, SamplingConfig, generate
from funaudiochat.drsr.fast_decode import decode_one, supports
from transformers import DynamicCache

from .test_generation import batch_of, make_model, prompt


@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.mark.parametrize("which", ["llm", "srh"])
def test_one_position_equals_the_model_forward(model, which):
    backbone = model.language_model.model if which == "llm" else model.audio_invert_tower.crq_transformer
    assert supports(backbone)
    torch.manual_seed(0)
    b, p, d = 3, 9, backbone.config.hidden_size
    x = torch.randn(b, p, d)
    mask = torch.ones(b, p, dtype=torch.long)
    mask[1, :3] = 0  # left padding of other lengths
    mask[2, :5] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    reference, fast = DynamicCache(config=backbone.config), DynamicCache(config=backbone.config)
    with torch.no_grad():
        for cache in (reference, fast):
            backbone(
                inputs_embeds=x, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True
            )
        for _ in range(3):
            new = torch.randn(b, 1, d)
            mask = torch.cat([mask, torch.ones(b, 1, dtype=torch.long)], dim=1)
            positions = positions[:, -1:] + 1
            want = backbone(
                inputs_embeds=new,
                attention_mask=mask,
                position_ids=positions,
                cache=reference,
                use_cache=True,
            ).last_hidden_state
            got = decode_one(backbone, new, mask, positions, fast)
            torch.testing.assert_close(got, want, rtol=0, atol=2e-6)
    for layer_ref, layer_fast in zip(reference.layers, fast.layers, strict=True):
        torch.testing.assert_close(layer_fast.keys, layer_ref.keys, rtol=0, atol=2e-6)
        torch.testing.assert_close(layer_fast.values, layer_ref.values, rtol=0, atol=2e-6)


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


@pytest.mark.parametrize("rows, n", [(1, 6565), (3, 512), (1, 130), (2, 96)])
def test_split_products_equal_the_plain_product(rows, n):
    from funaudiochat.drsr.fast_decode import linear

    g = torch.Generator().manual_seed(n)
    x, w = torch.randn(rows, 1, 256, generator=g), torch.randn(n, 256, generator=g)
    threads = torch.get_num_threads()
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            with torch.no_grad():
                got = linear(x, w)
            torch.testing.assert_close(got, torch.nn.functional.linear(x, w), rtol=0, atol=1e-5)
            assert got.shape == (rows, 1, n)
    finally:
        torch.set_num_threads(threads)
