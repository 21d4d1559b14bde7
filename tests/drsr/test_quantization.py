"""Weight-only int8 / int4 of the shared LLM and the SRH: each layer computes with the weight it stores,
close to the float one; the model keeps its tied head, embeddings and audio encoders, decodes (the fused
decoding path stepping aside) and stays close to the float model; bad settings are refused."""

import copy

import pytest
import torch
from funaudiochat.chat import random_pipeline
from funaudiochat.drsr import DecodingConfig, generate
from funaudiochat.drsr.quantization import (
    WeightOnlyLinear,
    int4_fits,
    is_quantized,
    quantize_weights,
    weight_bytes,
)
from torch import nn


@pytest.mark.parametrize("scheme,bound", [("int8", 0.01), ("int4", 0.12)])
def test_a_layer_computes_with_its_stored_weight(scheme, bound):
    torch.manual_seed(0)
    linear = nn.Linear(128, 64)
    layer = WeightOnlyLinear(linear, scheme, group_size=32)
    x = torch.randn(5, 3, 128)
    stored = layer.dequantized()
    with torch.no_grad():
        # the kernel's product is the stored weight's (activations rounded to bfloat16)
        torch.testing.assert_close(
            layer(x), x.bfloat16().float() @ stored.T + linear.bias, rtol=0.02, atol=0.02
        )
        error = (stored - linear.weight).abs().max() / linear.weight.abs().max()
    assert error < bound
    assert layer(x).dtype == torch.float32 and layer(x).shape == (5, 3, 64)


@pytest.fixture(scope="module")
def pipe_and_inputs(speech_16k):
    pipe = random_pipeline(0)
    prompt = pipe.processor.apply_chat_template([{"role": "user", "content": [{"type": "audio"}]}])
    return pipe, pipe.processor(prompt, audio=[speech_16k[0]])


@pytest.mark.parametrize("scheme,bound", [("int8", 0.03), ("int4", 0.25)])
def test_the_model_is_quantized_where_it_should_be_and_stays_close(pipe_and_inputs, scheme, bound):
    pipe, inputs = pipe_and_inputs
    model = copy.deepcopy(pipe.model)
    before = weight_bytes(model.language_model)
    count = quantize_weights(model, scheme)
    linears = [m for m in model.language_model.modules() if isinstance(m, WeightOnlyLinear)]
    srh = [m for m in model.audio_invert_tower.modules() if isinstance(m, WeightOnlyLinear)]
    assert count == len(linears) + len(srh) and linears and srh
    assert type(model.audio_invert_tower.lm_head) is nn.Linear  # tied to the speech-token table
    assert model.audio_invert_tower.lm_head.weight is model.audio_tower.embed_tokens.weight
    assert not any(isinstance(m, WeightOnlyLinear) for m in model.continuous_audio_tower.modules())
    assert is_quantized(model) and is_quantized(model.language_model.model)
    assert weight_bytes(model.language_model) < before * (0.5 if scheme == "int8" else 0.45)
    with torch.no_grad():
        ref = pipe.model(**inputs).text_logits
        got = model(**inputs).text_logits
    assert ((got - ref).abs().max() / ref.abs().max()).item() < bound
    config = DecodingConfig(max_new_tokens=6)
    result = generate(model, inputs, config)  # decodes, speech included, without the fused path
    assert result.sequences.shape[1] > inputs["input_ids"].shape[1]


def test_int4_falls_back_to_int8_where_it_cannot_pack():
    assert int4_fits(nn.Linear(64, 1056), 32) and not int4_fits(nn.Linear(64, 1055), 32)
    assert not int4_fits(nn.Linear(48, 64), 32)
    model = nn.Module()
    model.language_model = nn.Sequential(nn.Linear(64, 1055), nn.Linear(64, 64))
    quantize_weights(model, "int4")
    assert [layer.scheme for layer in model.language_model] == ["int8", "int4"]


def test_bad_settings_are_refused():
    model = nn.Module()
    model.language_model = nn.Linear(64, 64)
    with pytest.raises(ValueError, match="quantize must be one of"):
        quantize_weights(model, "int2")
    with pytest.raises(ValueError, match="group_size must be 32, 64, 128 or 256"):
        quantize_weights(model, "int4", group_size=48)
    with pytest.raises(ValueError, match="scheme must be one of"):
        WeightOnlyLinear(nn.Linear(64, 64), "fp8")
