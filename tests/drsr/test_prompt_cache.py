"""Prompt prefixes computed once (``PromptPrefix``): a prefill that starts from one decodes what the
whole prompt decodes; prefixes that do not fit are refused with the reason."""

import pytest
import torch
from funaudiochat.drsr import DecodingConfig, PromptPrefix, SamplingConfig, generate
from funaudiochat.drsr.generation import prefill
from funaudiochat.drsr.prompt_cache import system_turn_length

from .test_generation import GREEDY, batch_of, make_model, prompt

SAMPLED = DecodingConfig(max_new_tokens=20, text=SamplingConfig(do_sample=True, temperature=0.9), seed=3)


@pytest.fixture(scope="module")
def model():
    return make_model(eos_text_scale=2.0, eos_speech_scale=2.0)


@pytest.fixture(scope="module")
def prompts(model):
    head = [317, 20, 10, 42, 43, 44]  # a "system turn" of six text tokens, then different audio
    return [prompt(model.config, 1.3, head, seed=1), prompt(model.config, 1.3, head, seed=2)]


def build(model, inputs, n: int, config: DecodingConfig) -> PromptPrefix:
    speech = not config.disable_speech
    return PromptPrefix.build(model, inputs["input_ids"][0, :n], growing=config.fast_decode, speech=speech)


@pytest.mark.parametrize("prompt_token", ["bos", "pad"])
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "reference"])
@pytest.mark.parametrize("config", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_prefill_from_a_prefix_decodes_as_the_whole_prompt(model, prompts, config, fast, prompt_token):
    model.config.audio_config.srh_prompt_token = prompt_token
    try:
        config = DecodingConfig(**{**config.__dict__, "fast_decode": fast})
        inputs = batch_of(prompts)  # equal lengths: no padding
        prefix = build(model, inputs, 6, config)
        whole = generate(model, inputs, config)
        cached = generate(model, inputs, config, prefix=prefix)
        assert torch.equal(cached.sequences, whole.sequences)
        for a, b in zip(cached.speech_ids, whole.speech_ids, strict=True):
            assert a.numel() > 0 and torch.equal(a, b)
        again = generate(model, inputs, config, prefix=prefix)  # the prefix is not changed by a use
        assert torch.equal(again.sequences, whole.sequences)
    finally:
        model.config.audio_config.srh_prompt_token = "bos"


def test_the_caches_hold_what_a_whole_prefill_computes(model, prompts):
    inputs = prompts[0]
    prefix = build(model, inputs, 6, GREEDY)
    whole, _ = prefill(model, inputs, GREEDY)
    cached, _ = prefill(model, inputs, GREEDY, prefix=prefix)
    for (k1, v1), (k2, v2) in zip(whole.llm_cache._layers(), cached.llm_cache._layers(), strict=True):
        torch.testing.assert_close(k1, k2, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(v1, v2, rtol=1e-5, atol=1e-5)
    assert torch.equal(whole.srh.attention_mask, cached.srh.attention_mask)
    for (k1, _), (k2, _) in zip(whole.srh.cache._layers(), cached.srh.cache._layers(), strict=True):
        torch.testing.assert_close(k1, k2, rtol=1e-5, atol=1e-5)


def test_speech_to_text_prefix(model, prompts):
    config = DecodingConfig(max_new_tokens=12, disable_speech=True)
    prefix = build(model, prompts[0], 6, config)
    assert prefix.srh is None
    assert torch.equal(
        generate(model, prompts[0], config, prefix=prefix).sequences,
        generate(model, prompts[0], config).sequences,
    )


def test_prefixes_that_do_not_fit_are_refused(model, prompts):
    fitting = build(model, prompts[0], 6, GREEDY)
    other = prompt(model.config, 1.3, [317, 21, 10, 42, 43, 44], seed=1)
    with pytest.raises(ValueError, match="does not start with the prefix"):
        prefill(model, other, GREEDY, prefix=fitting)
    short = prompt(model.config, 0.5, [317], seed=3)
    with pytest.raises(ValueError, match="left-padded into it"):
        prefill(model, batch_of([prompts[0], short]), GREEDY, prefix=build(model, short, 1, GREEDY))
    text = {
        "input_ids": torch.tensor([[317, 20, 10, 42]]),
        "attention_mask": torch.ones(1, 4, dtype=torch.long),
    }
    with pytest.raises(ValueError, match="must be longer than its prefix"):
        prefill(model, text, GREEDY, prefix=build(model, text, 4, GREEDY))
    with pytest.raises(ValueError, match="growing=True"):
        prefill(model, prompts[0], DecodingConfig(fast_decode=False), prefix=fitting)
    with pytest.raises(ValueError, match="SRH's state"):
        prefill(model, prompts[0], DecodingConfig(disable_speech=True), prefix=fitting)
    with pytest.raises(ValueError, match="text tokens only"):
        build(model, prompts[0], 10, GREEDY)
    with pytest.raises(ValueError, match="at least one token"):
        PromptPrefix.build(model, torch.zeros(0, dtype=torch.long), growing=True, speech=True)


def test_system_turn_length():
    im_start = 7
    assert system_turn_length(torch.tensor([7, 1, 2, 3, 7, 4, 7, 5]), im_start) == 4
    assert system_turn_length(torch.tensor([7, 1, 2]), im_start) is None  # one turn only
    assert system_turn_length(torch.tensor([1, 7, 2, 7]), im_start) is None  # does not open with a turn
