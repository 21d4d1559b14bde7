"""The key/value cache argument of transformers' model forwards, under either of its names.

transformers 5.x renamed the argument ``past_key_values`` of decoder forwards (and the output field of the
same name) to ``cache``: 5.25 takes ``cache=``, 5.17 takes ``past_key_values=`` and silently swallows an
unknown ``cache=`` into ``**kwargs`` (the model then builds a cache of its own and ours stays empty). The
environments users bring differ (vLLM and GPU images pin their own transformers), so every call that hands
a cache to a transformers model goes through :func:`cache_kwargs`.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

from transformers.models.qwen3.modeling_qwen3 import Qwen3Model


@lru_cache(maxsize=1)
def cache_argument() -> str:
    """``"cache"`` or ``"past_key_values"``: the name the installed transformers gives the cache argument."""
    parameters = inspect.signature(Qwen3Model.forward).parameters
    if "cache" in parameters:
        return "cache"
    if "past_key_values" in parameters:
        return "past_key_values"
    raise RuntimeError(
        "this transformers version's Qwen3Model.forward takes neither `cache` nor `past_key_values`: "
        f"its arguments are {list(parameters)}"
    )


def cache_kwargs(cache: Any) -> dict[str, Any]:
    """``{name: cache}`` to splat into a transformers forward call, under the installed version's name."""
    return {cache_argument(): cache}


def output_cache(output: Any) -> Any:
    """The cache a transformers forward returned (``output.cache`` or ``output.past_key_values``)."""
    return getattr(output, cache_argument())
