"""A prompt's first tokens computed once: ``PromptPrefix`` holds the LLM's and the SRH's keys and values
of a text prefix (the system turn, which every request to a pipeline or a server shares), and
``prefill(..., prefix=...)`` starts from a copy of them, so only the rest of each prompt runs (prefix
caching, as vLLM's, for prefixes the caller names).

    >>> prefix = PromptPrefix.build(model, input_ids[0, :n], growing=True, speech=True)
    >>> state, first = prefill(model, inputs, config, prefix=prefix)   # runs input_ids[:, n:] only

The prefix's keys and values are those a whole-prompt prefill computes (the same layers over the same
positions); results agree to float rounding, as any split of a matrix product does. ``system_turn_length``
says where the system turn of a ChatML prompt ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .hf_compat import cache_kwargs
from .kv_cache import KVCache
from .speech_heads import SRHState

if TYPE_CHECKING:
    from .modeling import FunAudioChatForConditionalGeneration


def srh_prompt_token(audio_config) -> int:
    """The previous-token id the SRH is fed on prompt positions: pad (``srh_prompt_token="pad"``, as the
    demo model is trained) or BOS (the official prefill)."""
    if audio_config.srh_prompt_token == "pad":
        return audio_config.pad_token_id
    return audio_config.bos_token_id


def system_turn_length(ids: torch.Tensor, im_start: int) -> int | None:
    """Tokens of a ChatML prompt ``ids [L]`` before its second ``<|im_start|>``: the system turn, when the
    prompt opens with one (None when it has no second turn)."""
    starts = torch.nonzero(ids == im_start).flatten()
    if starts.numel() < 2 or int(starts[0]) != 0:
        return None
    return int(starts[1])


@dataclass
class PromptPrefix:
    """The decoding state after the text tokens ``ids [P]`` at positions 0..P-1, for one row:
    ``llm_cache`` the LLM's keys and values; ``srh`` the SRH's (None: built without speech); ``growing``
    the caches' kind (``DecodingConfig.fast_decode``)."""

    ids: torch.Tensor
    llm_cache: KVCache
    srh: SRHState | None
    growing: bool

    @property
    def length(self) -> int:
        return self.ids.numel()

    @classmethod
    @torch.inference_mode()
    def build(
        cls, model: FunAudioChatForConditionalGeneration, ids: torch.Tensor, growing: bool, speech: bool
    ) -> PromptPrefix:
        """Run ``ids [P]`` (text tokens only) through the LLM and, with ``speech``, the SRH.

        growing: caches whose layers append in place (``DecodingConfig.fast_decode``); speech: also the
        SRH's keys and values (a model without an SRH has none)."""
        ids = ids.reshape(1, -1).to(model.get_input_embeddings().weight.device)
        if ids.shape[1] == 0:
            raise ValueError("a prompt prefix needs at least one token")
        if bool((ids == model.config.audio_token_index).any()):
            raise ValueError("a prompt prefix holds text tokens only (no <|AUDIO|> placeholder)")
        embeds = model.get_input_embeddings()(ids)
        positions = torch.arange(ids.shape[1], device=ids.device)[None]
        mask = torch.ones_like(ids)
        cache = KVCache.empty(model.language_model.config, 1, growing=growing)
        out = model.language_model.model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions,
            **cache_kwargs(cache.cache),
            use_cache=True,
        )
        srh = None
        head = model.audio_invert_tower
        if speech and head is not None:
            srh = head.init_state(1, ids.device, growing_cache=growing)
            head.fill(
                model.srh_conditioning(out.last_hidden_state, embeds),
                srh,
                positions=positions,
                valid=mask,
                prefix_token=srh_prompt_token(model.config.audio_config),
            )
        return cls(ids[0].clone(), cache, srh, growing)

    def check(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, growing: bool, speech: bool
    ) -> None:
        """Raise ``ValueError`` unless every row of ``input_ids [B, L]`` starts with this prefix, unpadded,
        and has a token after it, with caches of the decoding's kind."""
        n = self.length
        if input_ids.shape[1] <= n:
            raise ValueError(f"the prompt ({input_ids.shape[1]} tokens) must be longer than its prefix ({n})")
        if not bool(attention_mask[:, :n].all()):
            raise ValueError("a prompt prefix cannot be used for rows left-padded into it")
        if not bool((input_ids[:, :n] == self.ids.to(input_ids.device)).all()):
            raise ValueError("the prompt does not start with the prefix's tokens")
        if growing != self.growing:
            raise ValueError(f"the prefix was built with growing={self.growing}, the decoding has {growing}")
        if speech != (self.srh is not None):
            made = "with" if self.srh is not None else "without"
            raise ValueError(f"the prefix was built {made} the SRH's state; this decoding needs the other")

    def expand(self, batch: int) -> tuple[KVCache, SRHState | None]:
        """Copies of the caches for ``batch`` rows (decoding appends to them in place)."""
        rows = [0] * batch
        return self.llm_cache.select(rows), None if self.srh is None else self.srh.select(rows)
