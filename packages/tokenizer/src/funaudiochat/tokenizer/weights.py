"""Strict state-dict loading and safetensors I/O for the tokenizer: ``funaudiochat.base.weights``."""

from funaudiochat.base.weights import (
    check_state_dict,
    load_state_dict_strict,
    read_safetensors,
    write_safetensors,
)

__all__ = ["check_state_dict", "load_state_dict_strict", "read_safetensors", "write_safetensors"]
