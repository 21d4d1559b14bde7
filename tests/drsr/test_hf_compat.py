"""The cache argument's name follows the installed transformers."""

from __future__ import annotations

import inspect

import torch
from funaudiochat.drsr.hf_compat import cache_argument, cache_kwargs, output_cache
from transformers import DynamicCache, Qwen3Config
from transformers.models.qwen3.modeling_qwen3 import Qwen3Model


def test_the_name_is_the_one_the_model_forward_takes():
    assert cache_argument() in inspect.signature(Qwen3Model.forward).parameters
    assert list(cache_kwargs("x")) == [cache_argument()]


def test_a_cache_handed_over_is_the_one_filled_and_returned():
    config = Qwen3Config(
        vocab_size=11,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
    )
    model = Qwen3Model(config).eval()
    cache = DynamicCache(config=config)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([[1, 2, 3]]), use_cache=True, **cache_kwargs(cache))
    assert output_cache(out) is cache
    assert cache.get_seq_length() == 3
