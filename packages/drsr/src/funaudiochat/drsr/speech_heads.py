"""The speech sides of the dual-resolution model: ``audio_tower`` (25 Hz speech ids -> 5 Hz groups) and
``audio_invert_tower``, the Speech Refined Head (one 5 Hz LLM state -> k speech tokens at 25 Hz), with the
SRH's streaming state (``SRHState``, on the one streaming contract of ``funaudiochat.base``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from funaudiochat.base.streaming import StreamState, ragged, row
from torch import nn
from torch.profiler import record_function
from transformers import AutoConfig, AutoModel

from . import fast_decode, ops
from .configuration import FunAudioChatAudioEncoderConfig
from .hf_compat import cache_kwargs
from .kv_cache import KVCache


def _zero_grad_row(table: torch.Tensor, row: int | None) -> torch.Tensor:
    """Identity on ``table`` whose gradient skips ``row`` (``nn.Embedding``'s ``padding_idx`` rule)."""
    if row is None or not table.requires_grad:
        return table
    return _ZeroRowGrad.apply(table, row)


class _ZeroRowGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table, row):
        ctx.row = row
        return table.view_as(table)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        grad[ctx.row] = 0
        return grad, None


class DiscreteSpeechEncoder(nn.Module):
    """``audio_tower``: speech ids (25 Hz) -> one vector per group of k (5 Hz).

    ``embed_tokens`` [codebook, D] is also the SRH's output head (tied). With ``grouping="mean"`` (official)
    a group is ``output_matching(mean_j E[id_j])``; with ``"concat"`` it is
    ``output_matching(cat_j E[id_j])``.
    """

    def __init__(self, config: FunAudioChatAudioEncoderConfig):
        super().__init__()
        self.group_size = config.group_size
        self.hidden_size = config.output_dim
        self.grouping = config.grouping
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.codebook_size, self.hidden_size, config.pad_token_id)
        width = self.hidden_size * (self.group_size if self.grouping == "concat" else 1)
        self.output_matching = nn.Linear(width, self.hidden_size, bias=False)
        self.continual_output_matching = nn.Linear(width, self.hidden_size, bias=False)
        self.continuous_features_mode = config.continuous_features_mode

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, D]`` -> ``[B, T/k, D]`` (mean) or ``[B, T/k, kD]`` (concat)."""
        b, t, d = x.shape
        grouped = x.reshape(b, t // self.group_size, self.group_size, d)
        return grouped.mean(2) if self.grouping == "mean" else grouped.reshape(b, t // self.group_size, -1)

    def group_speech(self, speech_ids: torch.Tensor) -> torch.Tensor:
        """``speech_ids [B, T]`` (T a multiple of k) -> ``[B, T/k, D]``."""
        table = _zero_grad_row(self.embed_tokens.weight, self.padding_idx)
        if self.grouping == "mean":
            return self.output_matching(ops.group(speech_ids, table, self.group_size))
        return self.output_matching(self._pool(F.embedding(speech_ids, table)))

    def group_continuous(self, features: torch.Tensor) -> torch.Tensor:
        """Continuous encoder output ``[B, T, D]`` -> ``[B, T/k, D]``."""
        return self.continual_output_matching(self._pool(features))

    def forward(
        self,
        speech_ids: torch.Tensor,
        continuous_features: torch.Tensor | None = None,
        feature_exist_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Grouped speech ``[N, T/k, D]``. ``continuous_features [M, T, D]`` belong, in order, to the M
        audios where ``feature_exist_mask [N]`` is True (all N when it is None); there they replace (or,
        in "add" mode, are added to) the discrete groups."""
        hidden = self.group_speech(speech_ids)
        if continuous_features is None:
            return hidden
        n = hidden.shape[0]
        mask = (
            torch.ones(n, dtype=torch.bool, device=hidden.device)
            if feature_exist_mask is None
            else feature_exist_mask.to(device=hidden.device, dtype=torch.bool)
        )
        if int(mask.sum()) != continuous_features.shape[0]:
            raise ValueError(
                f"feature_exist_mask marks {int(mask.sum())} audios with features, but "
                f"{continuous_features.shape[0]} feature rows were given"
            )
        cont = self.group_continuous(continuous_features).to(hidden.dtype)
        if self.continuous_features_mode == "add":
            return hidden.index_add(0, torch.nonzero(mask).flatten(), cont)
        return hidden.index_copy(0, torch.nonzero(mask).flatten(), cont)


class SpeechRefinedHead(nn.Module):
    """``audio_invert_tower`` (official class ``FunAudioChatDecoder``): the Speech Refined Head.

    For an LLM state ``c = h + E_text`` at 5 Hz position p it emits k speech tokens at 25 Hz:
    ``u = pre_matching(c)`` is split into k sub-frames; sub-frame j gets the embedding of the previous
    speech token (``lm_head.weight`` = ``audio_tower.embed_tokens.weight``), goes through
    ``input_matching``, a causal Qwen3 decoder at position ``k * p + j``, ``output_matching`` and ``lm_head``.
    """

    def __init__(self, config: FunAudioChatAudioEncoderConfig):
        super().__init__()
        self.group_size = config.group_size
        self.hidden_size = config.output_dim
        self.bos_token_id = config.bos_token_id
        self.pad_token_id = config.pad_token_id
        self.pre_matching = nn.Linear(self.hidden_size, self.hidden_size * self.group_size, bias=True)
        crq_config = AutoConfig.for_model(**config.crq_transformer_config)
        self.crq_transformer = AutoModel.from_config(crq_config)
        del self.crq_transformer.embed_tokens
        self.input_matching = nn.Linear(self.hidden_size, crq_config.hidden_size, bias=False)
        self.output_matching = nn.Linear(crq_config.hidden_size, self.hidden_size, bias=False)
        self.lm_head = nn.Linear(config.output_dim, config.codebook_size, bias=False)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.lm_head.weight)

    def _decode(
        self, x, attention_mask, position_ids, cache=None, select=None, fast: bool = False, last: bool = False
    ):
        """SRH logits of sub-frames ``x [B, T, D]``; ``select`` (bool ``[B, T]``): only those positions'
        (``[N, V]``); ``last``: only the last position's (``[B, 1, V]``); ``fast`` (one sub-frame with a
        cache): through ``fast_decode.decode_one`` when it supports the backbone."""
        if fast and cache is not None and x.shape[1] == 1 and fast_decode.supports(self.crq_transformer):
            embeds = fast_decode.linear(x, self.input_matching.weight)
            hidden = fast_decode.decode_one(self.crq_transformer, embeds, attention_mask, position_ids, cache)
            matched = fast_decode.linear(hidden, self.output_matching.weight)
            return fast_decode.linear(matched, self.lm_head.weight), None
        out = self.crq_transformer(
            inputs_embeds=self.input_matching(x),
            attention_mask=attention_mask,
            position_ids=position_ids,
            **cache_kwargs(cache),
            use_cache=cache is not None,
        )
        hidden = out.last_hidden_state
        hidden = hidden[:, -1:] if last else hidden if select is None else hidden[select]
        return self.lm_head(self.output_matching(hidden)), out

    def forward(
        self,
        conditioning: torch.Tensor,
        prev_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        select: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Teacher-forced logits ``[B, S*k, codebook]``, or with ``select`` (bool ``[B, S*k]``) those of the
        selected positions only, ``[N, codebook]`` in row-major order: the head's largest product is then
        computed where a loss needs it, the decoder stops after the last selected position (it is causal:
        later positions change nothing before them) and skips the rows with none selected (a text reply's
        row in a mixed batch: each row attends only to itself).

        ``conditioning [B, S, D]`` = LLM last hidden + text embedding; ``prev_ids [B, S*k]`` the previous
        speech token of each 25 Hz position, or None: no previous-token embedding is added (what the
        official head does when a batch has no speech labels); ``attention_mask``/``position_ids [B, S]``
        at 5 Hz (positions are expanded to ``k * p + j``, and padding positions, ``p == 0`` after the last
        non-zero, to 0).
        """
        k = self.group_size
        b, s, _ = conditioning.shape
        positions = None
        if position_ids is not None:
            positions = (position_ids.unsqueeze(-1) * k + torch.arange(k, device=position_ids.device)).view(
                b, -1
            )
            nonzero = position_ids != 0
            last = torch.where(nonzero.any(-1), s - nonzero.flip(-1).long().argmax(-1), 0)
            padding = torch.arange(s, device=position_ids.device)[None, :] >= last[:, None]
            positions = positions.masked_fill(padding.repeat_interleave(k, dim=1), 0)
        if select is not None:
            needed = select.any(0).nonzero()
            s = int(needed[-1]) // k + 1 if needed.numel() else 1
            rows = select.any(1)
            if bool(rows.any()) and not bool(rows.all()):  # rows without a selected position: left out
                rows = rows.nonzero()[:, 0]
                b = rows.numel()
            else:
                rows = slice(None)
            conditioning, select = conditioning[rows, :s], select[rows, : s * k]
            prev_ids = None if prev_ids is None else prev_ids[rows, : s * k]
            attention_mask = None if attention_mask is None else attention_mask[rows, :s]
            positions = None if positions is None else positions[rows, : s * k]
        u = self.pre_matching(conditioning)
        if u.dtype != self.lm_head.weight.dtype:  # autocast ran the Linear in bf16/fp16: add in the table's
            u = u.to(self.lm_head.weight.dtype)
        if prev_ids is None:  # the k-way split alone
            x = u.view(b, u.shape[1] * k, -1)
        else:
            x = ops.ungroup_(u, prev_ids, self.lm_head.weight, k)
        mask = attention_mask.repeat_interleave(k, dim=1) if attention_mask is not None else None
        logits, _ = self._decode(x, mask, positions, select=select)
        return logits

    # ---- streaming ----------------------------------------------------------------------------
    def init_state(self, batch_size: int = 1, device=None, growing_cache: bool = True) -> SRHState:
        """A fresh SRH state for ``batch_size`` sequences (nothing cached; previous token BOS);
        ``growing_cache``: see ``KVCache.empty``."""
        return SRHState(
            cache=KVCache.empty(self.crq_transformer.config, batch_size, growing_cache),
            attention_mask=torch.zeros(batch_size, 0, dtype=torch.long, device=device),
            prev_token=torch.full((batch_size,), self.bos_token_id, dtype=torch.long, device=device),
        )

    def _sub_frames(self, conditioning, positions, valid, fast: bool = False):
        """``conditioning [B, S, D]`` -> its k sub-frames ``[B, S*k, D]`` (before the previous-token
        embedding) with their positions ``k * p + j`` and validity, ``[B, S*k]`` each."""
        k = self.group_size
        b, s, _ = conditioning.shape
        if fast and s == 1:  # one 5 Hz position: its k sub-frames from one split product
            pre = fast_decode.project(conditioning, self.pre_matching)
        else:
            pre = self.pre_matching(conditioning)
        sub_positions = (positions.unsqueeze(-1) * k + torch.arange(k, device=positions.device)).view(b, -1)
        return pre.view(b, s * k, self.hidden_size), sub_positions, valid.repeat_interleave(k, dim=1)

    def fill(
        self,
        conditioning: torch.Tensor,
        state: SRHState,
        *,
        positions: torch.Tensor,
        valid: torch.Tensor,
        prefix_token: int,
    ) -> None:
        """Run the SRH over ``S`` prompt positions whose speech nobody picks, every sub-frame fed
        ``prefix_token``: their keys and values join ``state`` (in place). A ``step`` over these and later
        positions computes the same for these (``prompt_cache``). Arguments as ``step``."""
        b = conditioning.shape[0]
        sub, sub_positions, sub_valid = self._sub_frames(conditioning, positions, valid)
        prev = torch.full((b,), prefix_token, dtype=torch.long, device=conditioning.device)
        mask = torch.cat([state.attention_mask, sub_valid], dim=1)
        with record_function("srh_substep"):
            self._decode(
                sub + self.embed(prev)[:, None, :], mask, sub_positions, state.cache.cache, last=True
            )
        state.attention_mask = mask

    def step(
        self,
        conditioning: torch.Tensor,
        state: SRHState,
        *,
        positions: torch.Tensor,
        valid: torch.Tensor,
        pick,
        prefix_token: int | None = None,
        fast: bool = False,
    ) -> torch.Tensor:
        """Run the SRH over ``S`` new LLM positions and return the k tokens of the last one ``[B, k]``;
        ``state`` is updated in place.

        conditioning: ``[B, S, D]`` LLM hidden + text embedding of the new positions;
        positions: ``[B, S]`` their 5 Hz positions (each row its own);
        valid: ``[B, S]`` attention mask of the new positions;
        pick: ``pick(logits [B, V], j) -> ids [B]`` chooses the j-th token of the group;
        prefix_token: the previous-token id fed to the first sub-frames (the prefill's: BOS, or pad per
        ``srh_prompt_token``), instead of the state's previous token;
        fast: single sub-frames go through ``fast_decode`` (the same computation, less overhead).
        All sub-frames but the last ``k - 1`` of the last position are fed at once; then ``k - 1`` more
        sub-steps follow, each fed the token just picked."""
        k = self.group_size
        b, s, _ = conditioning.shape
        sub, sub_positions, sub_valid = self._sub_frames(conditioning, positions, valid, fast)
        first = s * k - (k - 1)
        prev = state.prev_token if prefix_token is None else torch.full_like(state.prev_token, prefix_token)
        x = sub[:, :first] + self.embed(prev)[:, None, :]
        mask = torch.cat([state.attention_mask, sub_valid[:, :first]], dim=1)
        cache = state.cache.cache
        with record_function("srh_substep"):
            # the first sub-frames only fill the cache: the head runs on the last one alone
            logits, _ = self._decode(x, mask, sub_positions[:, :first], cache, fast=fast, last=True)
        tokens = [pick(logits[:, -1].float(), 0)]
        for j in range(1, k):
            with record_function("srh_substep"):
                x = sub[:, first + j - 1 : first + j] + self.embed(tokens[-1])[:, None, :]
                mask = torch.cat([mask, sub_valid[:, first + j - 1 : first + j]], dim=1)
                positions_j = sub_positions[:, first + j - 1 : first + j]
                logits, _ = self._decode(x, mask, positions_j, cache, fast=fast)
            tokens.append(pick(logits[:, -1].float(), j))
        group = torch.stack(tokens, dim=1)
        state.attention_mask, state.prev_token = mask, group[:, -1]
        return group


@dataclass
class SRHState(StreamState):
    """Streaming state of the SRH for B sequences: its key/value cache, the attention mask over the
    cached sub-frame positions ``[B, P]`` (left-padded when sessions of different lengths share a batch),
    and the previous speech token of each sequence ``[B]``."""

    cache: KVCache
    attention_mask: torch.Tensor = ragged(dim=1, side="left", fill=0)
    prev_token: torch.Tensor = row()
