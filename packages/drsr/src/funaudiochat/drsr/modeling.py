"""Fun-Audio-Chat: the dual-resolution model, weight-compatible with the official checkpoint.

Module tree (state-dict prefixes are the official ones, reference §2.4)::

    FunAudioChatForConditionalGeneration
    ├── continuous_audio_tower  ContinuousAudioEncoder   log-mel 100 Hz -> [T25, D]   (funaudiochat.tokenizer)
    ├── audio_tower             DiscreteSpeechEncoder    speech ids 25 Hz -> grouped [T25/k, D] (5 Hz)
    ├── language_model          any HF causal LM         the shared LLM at 5 Hz (Qwen3 by default)
    └── audio_invert_tower      SpeechRefinedHead        LLM state -> k speech tokens at 25 Hz (SRH)

Numerics follow the official code (reference §3, §4, §14): mean-of-k grouping then a D x D linear;
continuous features replace the discrete ones; assistant audio slots hold ``(E_text + E_speech_group)/2``;
the SRH input is ``pre_matching(h + s * E_text.detach())`` (s = ``srh_text_scale``, officially 1) split
into k sub-frames plus the previous speech token's embedding (tied table), at positions ``k * p + j``;
loss = text CE + speech CE (labels shifted by one group). Decoding lives in ``generation.py`` (mixed in),
the speech heads in ``speech_heads.py``.

Shapes: B batch, S text positions (5 Hz), N audios, T speech frames (25 Hz, multiple of k), D LLM width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from funaudiochat.tokenizer import AudioEncoderConfig, ContinuousAudioEncoder
from funaudiochat.tokenizer.audio_encoder import sinusoids
from torch import nn
from torch.profiler import record_function
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers import initialization as hf_init
from transformers.utils import ModelOutput

from .configuration import FunAudioChatAudioEncoderConfig, FunAudioChatConfig
from .generation import FunAudioChatGenerationMixin
from .losses import mean_cross_entropy, sequence_log_prob
from .speech_heads import DiscreteSpeechEncoder, SpeechRefinedHead


@dataclass
class MergedInputs:
    """LLM input embeddings ``[B, S, D]`` and what the losses need from the audio merge."""

    inputs_embeds: torch.Tensor
    text_embeds: torch.Tensor  # E_text(input_ids), with assistant transcripts at their audio slots
    audio_slots: torch.Tensor  # [B, S] bool
    valid: torch.Tensor | None = None  # [N, T/k] bool: groups that fill a slot
    mid_speech_labels: torch.Tensor | None = None  # [N, T] speech ids, -100 past each length
    mid_text_labels: torch.Tensor | None = None  # [N, T/k] transcript ids, -100 where not trained


@dataclass
class FunAudioChatOutput(ModelOutput):
    """Forward output. Losses are means over non-ignored targets; ``loss = text_loss + speech_loss``.
    ``speech_targets [B, S*k]``: with ``speech_logits`` and labels, the SRH's target at each of their
    positions (the next group's codes; ignore index elsewhere)."""

    loss: torch.Tensor | None = None
    text_loss: torch.Tensor | None = None
    speech_loss: torch.Tensor | None = None
    text_logits: torch.Tensor | None = None
    speech_logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    cache: object | None = None
    text_logps: torch.Tensor | None = None
    speech_logps: torch.Tensor | None = None
    speech_targets: torch.Tensor | None = None


def _encoder_config(audio: FunAudioChatAudioEncoderConfig) -> AudioEncoderConfig:
    return AudioEncoderConfig(
        num_mel_bins=audio.num_mel_bins,
        d_model=audio.d_model,
        encoder_layers=audio.encoder_layers,
        encoder_attention_heads=audio.encoder_attention_heads,
        encoder_ffn_dim=audio.encoder_ffn_dim,
        max_source_positions=audio.max_source_positions,
        n_window=audio.n_window,
        output_dim=audio.output_dim,
    )


class FunAudioChatPreTrainedModel(PreTrainedModel):
    config_class = FunAudioChatConfig
    base_model_prefix = ""
    supports_gradient_checkpointing = True
    _no_split_modules = ["EncoderLayer", "Qwen3DecoderLayer"]
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        # Generic init (respects weights already loaded), plus the encoder's non-persistent position table,
        # which from_pretrained would otherwise leave uninitialised.
        super()._init_weights(module)
        if isinstance(module, ContinuousAudioEncoder):
            table = sinusoids(module.config.max_source_positions, module.config.d_model)
            hf_init.copy_(module.positional_embedding, table.to(module.positional_embedding.device))


class FunAudioChatForConditionalGeneration(FunAudioChatGenerationMixin, FunAudioChatPreTrainedModel):
    """Speech/text in, text + speech out. See the module docstring for the structure."""

    _tied_weights_keys = {"audio_invert_tower.lm_head.weight": "audio_tower.embed_tokens.weight"}

    def __init__(self, config: FunAudioChatConfig):
        super().__init__(config)
        audio = config.audio_config
        self.continuous_audio_tower = ContinuousAudioEncoder(_encoder_config(audio))
        self.audio_tower = DiscreteSpeechEncoder(audio)
        self.audio_invert_tower = SpeechRefinedHead(audio) if audio.enable_audio_invert_tower else None
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.group_size = audio.group_size
        # training only: a function applied to the SRH's previous-token ids [B, S*k] before the teacher-
        # forced forward (e.g. ``funaudiochat.training.llm.code_noise.NeighbourNoise``); None: as they are
        self.prev_code_transform = None
        self.post_init()
        self._tie_speech_head()

    def _tie_speech_head(self) -> None:
        if self.audio_invert_tower is not None:
            self.audio_invert_tower.lm_head.weight = self.audio_tower.embed_tokens.weight

    def tie_weights(self, *args, **kwargs):
        result = super().tie_weights(*args, **kwargs)
        self._tie_speech_head()
        return result

    def get_expanded_tied_weights_keys(self, all_submodels: bool = False) -> dict:
        # The SRH head is always tied to the speech embedding, whatever ``tie_word_embeddings`` says.
        keys = super().get_expanded_tied_weights_keys(all_submodels)
        if self.audio_invert_tower is not None:
            keys.update(self._tied_weights_keys)
        return keys

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """``PreTrainedModel.from_pretrained`` that refuses partial loads: any missing (other than the
        tied SRH head), unexpected or mis-shaped key is a ``ValueError`` that lists them."""
        want_info = kwargs.pop("output_loading_info", False)
        kwargs.setdefault("ignore_mismatched_sizes", True)  # reported below as a ValueError instead
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs
        )
        problems = []
        missing = sorted(k for k in info.get("missing_keys", ()) if k not in cls._tied_weights_keys)
        if missing:
            problems.append(f"missing keys: {', '.join(missing)}")
        if info.get("unexpected_keys"):
            problems.append(f"unexpected keys: {', '.join(sorted(info['unexpected_keys']))}")
        if info.get("mismatched_keys"):
            shown = [str(m) for m in sorted(info["mismatched_keys"], key=str)]
            problems.append(f"mis-shaped keys: {', '.join(shown)}")
        if info.get("error_msgs"):
            problems.append("; ".join(info["error_msgs"]))
        if problems:
            raise ValueError(
                f"{pretrained_model_name_or_path}: checkpoint does not fit {cls.__name__}: "
                + "; ".join(problems)
            )
        return (model, info) if want_info else model

    def srh_conditioning(self, hidden: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """The SRH's input: the LLM's last hidden state ``hidden [B, S, D]`` plus the text embedding of the
        same positions ``text_embeds [B, S, D]`` times ``audio_config.srh_text_scale`` (official: 1.0)."""
        scale = self.config.audio_config.srh_text_scale
        return hidden + text_embeds if scale == 1.0 else hidden + scale * text_embeds

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    @property
    def text_config(self):
        return self.config.text_config

    # ---- inputs -------------------------------------------------------------------------------
    def encode_audio(
        self,
        speech_ids: torch.Tensor,
        speech_attention_mask: torch.Tensor,
        input_features: torch.Tensor | None = None,
        feature_attention_mask: torch.Tensor | None = None,
        feature_exist_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per audio: grouped features ``[N, T/k, D]``, their valid-group mask ``[N, T/k]``, and the
        speech ids padded to a multiple of k ``[N, T]``."""
        k = self.group_size
        pad = self.config.audio_config.pad_token_id
        codebook = self.config.audio_config.codebook_size
        if speech_ids.numel() and (speech_ids.min() < 0 or speech_ids.max() >= codebook):
            raise ValueError(
                f"speech_ids must lie in [0, {codebook}) (codes 0..{codebook - 5} and specials), got range "
                f"[{int(speech_ids.min())}, {int(speech_ids.max())}]"
            )
        width = -(-speech_ids.shape[1] // k) * k
        speech_ids = F.pad(speech_ids, (0, width - speech_ids.shape[1]), value=pad)
        speech_attention_mask = F.pad(speech_attention_mask, (0, width - speech_attention_mask.shape[1]))
        continuous = None
        if input_features is not None:
            lengths = (
                feature_attention_mask.sum(-1)
                if feature_attention_mask is not None
                else torch.full((input_features.shape[0],), input_features.shape[-1])
            )
            with record_function("encoder"):
                hidden, _ = self.continuous_audio_tower(input_features, lengths)
            continuous = hidden.new_zeros(hidden.shape[0], width, hidden.shape[-1])
            n = min(width, hidden.shape[1])
            continuous[:, :n] = hidden[:, :n]
        with record_function("grouping"):
            grouped = self.audio_tower(speech_ids, continuous, feature_exist_mask)
        group_lengths = -(-speech_attention_mask.sum(-1) // k)
        valid = (
            torch.arange(width // k, device=grouped.device)[None, :]
            < group_lengths.to(grouped.device)[:, None]
        )
        return grouped, valid, speech_ids

    def _prepare_text_ids(self, text_ids: torch.Tensor, groups: int) -> torch.Tensor:
        """Transcript ids at one token per group: cut or padded to ``groups``; eos/pad become ``<|sil|>``."""
        tc = self.text_config
        fill = tc.pad_token_id if tc.pad_token_id is not None else tc.eos_token_id
        text_ids = text_ids[:, :groups]
        text_ids = F.pad(text_ids, (0, groups - text_ids.shape[1]), value=fill).clone()
        for special in (tc.eos_token_id, tc.pad_token_id):
            if special is not None:
                text_ids[text_ids == special] = tc.sil_index
        return text_ids

    def merge_inputs(
        self,
        input_ids: torch.Tensor,
        speech_ids: torch.Tensor | None = None,
        speech_attention_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        feature_attention_mask: torch.Tensor | None = None,
        feature_exist_mask: torch.Tensor | None = None,
        text_ids: torch.Tensor | None = None,
        text_attention_mask: torch.Tensor | None = None,
    ) -> MergedInputs:
        """Text embeddings with every audio's 5 Hz features scattered into its ``<|AUDIO|>`` slots."""
        cfg = self.config
        ignore, k = cfg.ignore_index, self.group_size
        embed = self.get_input_embeddings()
        inputs_embeds = embed(input_ids)
        audio_slots = input_ids == cfg.audio_token_index
        merged = MergedInputs(inputs_embeds=inputs_embeds, text_embeds=inputs_embeds, audio_slots=audio_slots)
        if speech_ids is None or not speech_ids.numel():
            if int(audio_slots.sum()):
                raise ValueError(
                    f"input_ids hold {int(audio_slots.sum())} <|AUDIO|> placeholders but no speech_ids "
                    "were given"
                )
            return merged
        if speech_attention_mask is None:
            speech_attention_mask = torch.ones_like(speech_ids)
        grouped, valid, speech_ids = self.encode_audio(
            speech_ids, speech_attention_mask, input_features, feature_attention_mask, feature_exist_mask
        )
        width = speech_ids.shape[1]
        mask = F.pad(speech_attention_mask, (0, width - speech_attention_mask.shape[1]))
        merged.mid_speech_labels = torch.where(mask == 1, speech_ids, ignore)
        text_features = None
        if text_ids is not None and text_ids.numel():
            text_ids = self._prepare_text_ids(text_ids.to(input_ids.device), width // k)
            if text_attention_mask is None:
                text_attention_mask = torch.ones(text_ids.shape[0], dtype=torch.bool, device=text_ids.device)
            text_attention_mask = text_attention_mask.bool()
            mid_text = torch.where(mask[:, ::k] == 1, text_ids, ignore)
            merged.mid_text_labels = mid_text.masked_fill(~text_attention_mask[:, None], ignore)
            text_features = embed(text_ids) * text_attention_mask[:, None, None].to(grouped.dtype)
            grouped = (text_features + grouped) / 2
        n_slots, n_features = int(audio_slots.sum()), int(valid.sum())
        if n_slots != n_features:
            raise ValueError(
                f"audio placeholders and audio features do not match: input_ids hold {n_slots} "
                f"<|AUDIO|> tokens (id {cfg.audio_token_index}) but the audios give {n_features} "
                f"5 Hz features (ceil(speech frames / {k}) each)"
            )
        slot_mask = audio_slots.unsqueeze(-1)
        merged.inputs_embeds = inputs_embeds.masked_scatter(slot_mask, grouped[valid].to(inputs_embeds.dtype))
        if text_features is not None:
            merged.text_embeds = inputs_embeds.masked_scatter(
                slot_mask, text_features[valid].to(inputs_embeds.dtype)
            )
        merged.valid = valid
        return merged

    # ---- training forward ---------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        speech_ids: torch.Tensor | None = None,
        speech_attention_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        feature_attention_mask: torch.Tensor | None = None,
        feature_exist_mask: torch.Tensor | None = None,
        text_ids: torch.Tensor | None = None,
        text_attention_mask: torch.Tensor | None = None,
        return_speech_logits: bool | None = None,
        return_sequence_logps: bool = False,
        **kwargs,
    ) -> FunAudioChatOutput:
        """Text + speech losses for a batch in the official training layout (reference §4.1).

        ``input_ids [B, S]`` hold ``audio_token_index`` at every audio slot (user and assistant);
        ``speech_ids``/``speech_attention_mask [N, T]`` one row per audio in order of appearance;
        ``input_features [N, n_mels, F]`` + ``feature_attention_mask [N, F]`` the log-mel of user audio
        and ``feature_exist_mask [N]`` which audios have them; ``text_ids [N, T']`` the per-group
        transcript of assistant audio with ``text_attention_mask [N]``; ``labels [B, S]`` as in the
        official data (-100 outside the assistant turn). ``return_speech_logits``: None (default) computes
        the speech loss from logits at the positions with speech targets only (the SRH head's 6561-way
        product elsewhere is wasted work) and returns no ``speech_logits``; True also returns them at every
        position ``[B, S*k, 6561]``; False skips the SRH. ``return_sequence_logps``: also the per-row sums
        of the target log-probabilities, ``text_logps [B]`` and ``speech_logps [B]`` (preference training).
        """
        cfg = self.config
        ignore = cfg.ignore_index
        k = self.group_size
        merged = self.merge_inputs(
            input_ids,
            speech_ids,
            speech_attention_mask,
            input_features,
            feature_attention_mask,
            feature_exist_mask,
            text_ids,
            text_attention_mask,
        )
        inputs_embeds, text_embeds = merged.inputs_embeds, merged.text_embeds
        speech_labels = None
        if labels is not None and merged.mid_speech_labels is not None:
            labels, speech_labels = self._build_labels(
                labels, merged.audio_slots, merged.valid, merged.mid_speech_labels, merged.mid_text_labels
            )

        with record_function("llm"):
            out = self.language_model.model(
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                position_ids=position_ids,
                **kwargs,
            )
            hidden = out.last_hidden_state
            text_logits = self.language_model.lm_head(hidden)
        text_loss = speech_loss = speech_logits = text_logps = speech_logps = None
        if labels is not None:
            text_loss = mean_cross_entropy(text_logits[:, :-1], labels[:, 1:], ignore)
            if return_sequence_logps:
                text_logps = sequence_log_prob(text_logits[:, :-1], labels[:, 1:], ignore)
        has_speech_targets = speech_labels is not None and bool((speech_labels != ignore).any())
        want_speech = has_speech_targets if return_speech_logits is None else return_speech_logits
        if self.audio_invert_tower is not None and want_speech:
            targets = select = prev = None
            # As the official head: with speech labels (even none trained) each 25 Hz position gets the
            # embedding of its previous token, pad where there is none; without speech labels (no labels,
            # or no audio in the batch) no previous-token embedding is added at all.
            if speech_labels is not None:
                prev = speech_labels.masked_fill(speech_labels == ignore, cfg.audio_config.pad_token_id)
                prev = torch.roll(prev, shifts=-(k - 1), dims=1)
                if self.training and self.prev_code_transform is not None:
                    prev = self.prev_code_transform(prev)
            if has_speech_targets:
                targets = F.pad(speech_labels, (0, k), value=ignore)[:, k:]
                if not return_speech_logits:  # the loss alone: logits where there are targets
                    select = targets != ignore
            with record_function("srh"):
                logits = self.audio_invert_tower(
                    self.srh_conditioning(hidden, text_embeds.detach()),
                    prev,
                    attention_mask=attention_mask,
                    position_ids=position_ids,
                    select=select,
                )
            if select is not None:
                picked = targets[select]
                speech_loss = F.cross_entropy(logits.float(), picked)
                if return_sequence_logps:
                    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, picked[:, None])[:, 0]
                    rows = select.nonzero()[:, 0]
                    speech_logps = logp.new_zeros(select.shape[0]).index_add(0, rows, logp)
            else:
                speech_logits = logits
                if has_speech_targets:
                    speech_loss = mean_cross_entropy(speech_logits, targets, ignore)
                    if return_sequence_logps:
                        speech_logps = sequence_log_prob(speech_logits, targets, ignore)
        if return_sequence_logps and labels is not None and speech_logps is None:
            speech_logps = text_logps.new_zeros(text_logps.shape)
        loss = None
        if text_loss is not None:
            loss = text_loss + speech_loss if speech_loss is not None else text_loss
        return FunAudioChatOutput(
            loss=loss,
            text_loss=text_loss,
            speech_loss=speech_loss,
            text_logits=text_logits,
            speech_logits=speech_logits,
            last_hidden_state=hidden,
            text_logps=text_logps,
            speech_logps=speech_logps,
            speech_targets=targets if speech_logits is not None else None,
        )

    def _build_labels(self, labels, audio_slots, valid, mid_speech_labels, mid_text_labels):
        """Text labels ``[B, S]`` and speech labels ``[B, S*k]`` from the official ``labels`` layout."""
        cfg = self.config
        ignore, k = cfg.ignore_index, self.group_size
        not_trained = labels == ignore
        speech = torch.full((*labels.shape, k), ignore, dtype=labels.dtype, device=labels.device)
        groups = mid_speech_labels.view(mid_speech_labels.shape[0], -1, k)[valid]
        speech = speech.masked_scatter(audio_slots.unsqueeze(-1), groups.to(labels.dtype))
        speech = speech.masked_fill(not_trained.unsqueeze(-1), ignore)
        speech = speech.masked_fill(
            (labels == self.text_config.audio_eos_index).unsqueeze(-1), cfg.audio_config.eos_token_id
        )
        text = labels.masked_fill(labels == cfg.audio_token_index, ignore)
        if mid_text_labels is not None:
            text = text.masked_scatter(audio_slots, mid_text_labels[valid].to(labels.dtype))
            text = text.masked_fill(not_trained, ignore)
        return text, speech.view(labels.shape[0], -1)
