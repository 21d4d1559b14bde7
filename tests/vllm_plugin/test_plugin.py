"""The vLLM plugin's weight routing and its test for a broken vLLM, without vLLM (the plugin's work inside
vLLM is ``test_vllm_serving.py``'s)."""

from __future__ import annotations

import pytest
from funaudiochat.vllm_plugin import needs_fix, qkv_target


@pytest.mark.parametrize(
    "name,target",
    [
        ("q_proj.weight", ("qkv_proj.weight", "q")),
        ("k_proj.weight", ("qkv_proj.weight", "k")),
        ("v_proj.bias", ("qkv_proj.bias", "v")),
        ("out_proj.weight", ("out_proj.weight", None)),
        ("out_proj.bias", ("out_proj.bias", None)),
    ],
)
def test_each_projection_goes_to_its_shard(name, target):
    assert qkv_target(name) == target


class Mapper:
    """A stand-in of vLLM's ``WeightsMapper`` with a fixed answer for ``k_proj.weight``."""

    def __init__(self, answer):
        self.answer = answer

    def _map_name_with_shard(self, name):
        assert name == "k_proj.weight"
        return self.answer


def attention_class(answer, own_loader: bool = True):
    body = {"hf_to_vllm_mapper": Mapper(answer)}
    if own_loader:
        body["load_weights"] = lambda self, weights: set()
    return type("FunAudioChatAudioAttention", (), body)


def test_only_a_broken_vllm_is_fixed():
    assert needs_fix(attention_class(("k_proj.weight", None)))  # vLLM 0.32-0.33: the name unchanged
    assert needs_fix(attention_class(("qkqkv_proj.weight", "v")))  # the dots dropped: still wrong
    assert not needs_fix(attention_class(("qkv_proj.weight", "k")))  # a vLLM that is right
    assert not needs_fix(attention_class(("k_proj.weight", None), own_loader=False))  # loads another way
