"""Configs of Fun-Audio-Chat, with the official field names so an official ``config.json`` loads as is.

``FunAudioChatConfig`` (``model_type="funaudiochat"``) holds:

- ``audio_config``: ``FunAudioChatAudioEncoderConfig`` (``model_type="funaudiochat_audio_encoder"``): the
  Whisper-style continuous encoder sizes, the speech vocabulary (6561 codes + BOS 6561 / EOS 6562 / pad
  6563, ``codebook_size`` 6565), ``group_size`` (5: 25 Hz -> 5 Hz) and the SRH backbone
  (``crq_transformer_config``, a Qwen3 config dict);
- ``text_config``: the shared LLM (any Hugging Face causal LM config; Qwen3 by default) with the extra
  fields ``audio_bos_index``, ``audio_eos_index``, ``sil_index``;
- ``audio_token_index``: the ``<|AUDIO|>`` placeholder id.

Defaults are the released Fun-Audio-Chat-8B values (reference §2). ``grouping`` is this project's own
field: ``"mean"`` (official: mean of the k embeddings, then a D x D linear) or ``"concat"`` (the paper's
Eq. 1: concatenation, then a kD x D linear; not weight-compatible with the official checkpoint).

Example (a tiny model for tests):
    >>> config = FunAudioChatConfig.tiny()
    >>> config.audio_config.group_size, config.text_config.hidden_size
    (5, 64)
"""

from __future__ import annotations

import copy
from typing import Any

from funaudiochat.base.constants import SPEECH_BOS, SPEECH_EOS, SPEECH_PAD
from transformers import AutoConfig, PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

# Qwen3-0.6B-shaped SRH backbone of the released checkpoint (reference §2.3).
DEFAULT_CRQ_TRANSFORMER_CONFIG: dict[str, Any] = {
    "model_type": "qwen3",
    "hidden_size": 1024,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 3072,
    "rope_theta": 1000000.0,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "vocab_size": 6565,
    "sliding_window": None,
    "use_sliding_window": False,
}

# Qwen3-8B-shaped shared LLM of the released checkpoint (reference §2.2).
DEFAULT_TEXT_CONFIG: dict[str, Any] = {
    "model_type": "qwen3",
    "hidden_size": 4096,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 12288,
    "vocab_size": 151936,
    "rms_norm_eps": 1e-6,
    "rope_theta": 5000000.0,
    "max_position_embeddings": 262144,
    "tie_word_embeddings": False,
    "sliding_window": None,
    "use_sliding_window": False,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "pad_token_id": 151643,
    "audio_bos_index": 151670,
    "audio_eos_index": 151671,
    "sil_index": 151673,
}

TEXT_CONFIG_AUDIO_FIELDS = ("audio_bos_index", "audio_eos_index", "sil_index")


class FunAudioChatAudioEncoderConfig(PretrainedConfig):
    """Audio side of Fun-Audio-Chat: continuous encoder, speech vocabulary, grouping and SRH sizes."""

    model_type = "funaudiochat_audio_encoder"

    def __init__(
        self,
        num_mel_bins: int = 128,
        encoder_layers: int = 32,
        encoder_attention_heads: int = 20,
        encoder_ffn_dim: int = 5120,
        d_model: int = 1280,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        activation_function: str = "gelu",
        activation_dropout: float = 0.0,
        scale_embedding: bool = False,
        initializer_range: float = 0.02,
        max_source_positions: int = 1500,
        n_window: int = 100,
        output_dim: int = 4096,
        bos_token_id: int = SPEECH_BOS,
        codebook_size: int = 6565,
        continuous_features_mode: str = "replace",
        crq_transformer_config: dict | None = None,
        eos_token_id: int = SPEECH_EOS,
        group_size: int = 5,
        enable_audio_invert_tower: bool = True,
        pad_token_id: int = SPEECH_PAD,
        grouping: str = "mean",
        srh_prompt_token: str = "bos",
        srh_text_scale: float = 1.0,
        **kwargs,
    ):
        self.num_mel_bins = num_mel_bins
        self.d_model = d_model
        self.encoder_layers = encoder_layers
        self.encoder_attention_heads = encoder_attention_heads
        self.encoder_ffn_dim = encoder_ffn_dim
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation_function = activation_function
        self.activation_dropout = activation_dropout
        self.num_hidden_layers = encoder_layers
        self.initializer_range = initializer_range
        self.scale_embedding = scale_embedding
        self.max_source_positions = max_source_positions
        self.n_window = n_window
        self.output_dim = output_dim
        self.codebook_size = codebook_size
        self.continuous_features_mode = continuous_features_mode
        self.crq_transformer_config = (
            copy.deepcopy(DEFAULT_CRQ_TRANSFORMER_CONFIG)
            if crq_transformer_config is None
            else dict(crq_transformer_config)
        )
        self.group_size = group_size
        self.enable_audio_invert_tower = enable_audio_invert_tower
        self.grouping = grouping
        # The previous-token id the SRH sees at the prompt's positions during decoding: "bos" (the official
        # loop: BOS everywhere, then its own picks at the prompt's last position) or "pad" (what training
        # feeds there: the pad id, -100 labels mapped to pad; models trained by this project's recipes)
        self.srh_prompt_token = srh_prompt_token
        # The SRH's conditioning is ``h + srh_text_scale * E_text``: 1.0 officially; a small LLM's text
        # embeddings are too short beside its hidden states for the head to read the word it must say
        self.srh_text_scale = srh_text_scale
        super().__init__(**kwargs)
        # Set after the base class, which may reset token ids it also knows about.
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field when the audio config is inconsistent."""
        if self.group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {self.group_size}")
        if self.continuous_features_mode not in ("replace", "add"):
            raise ValueError(
                f"continuous_features_mode must be 'replace' or 'add', got {self.continuous_features_mode!r}"
            )
        if self.grouping not in ("mean", "concat"):
            raise ValueError(f"grouping must be 'mean' (official) or 'concat' (paper), got {self.grouping!r}")
        if self.srh_prompt_token not in ("bos", "pad"):
            raise ValueError(
                f"srh_prompt_token must be 'bos' (official decoding) or 'pad' (as trained), "
                f"got {self.srh_prompt_token!r}"
            )
        if not (isinstance(self.srh_text_scale, (int, float)) and 0 <= self.srh_text_scale < float("inf")):
            raise ValueError(
                f"srh_text_scale must be a finite number >= 0 (official: 1.0), got {self.srh_text_scale!r}"
            )
        specials = {
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id,
        }
        for name, value in specials.items():
            if value is None or not 0 <= value < self.codebook_size:
                raise ValueError(
                    f"audio_config.{name} must lie in [0, codebook_size={self.codebook_size}), got {value}"
                )
        if self.crq_transformer_config.get("model_type") is None:
            raise ValueError("crq_transformer_config needs a model_type (e.g. 'qwen3')")

    @property
    def num_speech_codes(self) -> int:
        """Real speech codes (ids below the specials): 6561 for the S3 tokenizer."""
        return min(self.bos_token_id, self.eos_token_id, self.pad_token_id)


class FunAudioChatConfig(PretrainedConfig):
    """Top-level config: ``audio_config`` + ``text_config`` + ``audio_token_index``."""

    model_type = "funaudiochat"
    attribute_map = {"audio_token_id": "audio_token_index"}
    sub_configs = {"text_config": AutoConfig, "audio_config": FunAudioChatAudioEncoderConfig}

    def __init__(
        self,
        audio_config: dict | FunAudioChatAudioEncoderConfig | None = None,
        text_config: dict | PretrainedConfig | None = None,
        audio_token_index: int = 151669,
        ignore_index: int = -100,
        hidden_size: int | None = None,
        **kwargs,
    ):
        self.audio_token_index = audio_token_index
        self.ignore_index = ignore_index
        if audio_config is None:
            audio_config = FunAudioChatAudioEncoderConfig()
        elif isinstance(audio_config, dict):
            audio_config = {k: v for k, v in audio_config.items() if k != "model_type"}
            audio_config = FunAudioChatAudioEncoderConfig(**audio_config)
        self.audio_config = audio_config

        if text_config is None:
            text_config = copy.deepcopy(DEFAULT_TEXT_CONFIG)
        if isinstance(text_config, dict):
            text_config = dict(text_config)
            model_type = text_config.pop("model_type", "qwen3")
            text_config = CONFIG_MAPPING[model_type](**text_config)
        self.text_config = text_config
        self.hidden_size = hidden_size if hidden_size is not None else text_config.hidden_size
        super().__init__(**kwargs)
        self.validate()

    def validate(self) -> None:
        missing = [f for f in TEXT_CONFIG_AUDIO_FIELDS if getattr(self.text_config, f, None) is None]
        if missing:
            raise ValueError(
                f"text_config lacks the Fun-Audio-Chat fields {missing} (token ids of "
                "<|audio_bos|>, <|audio_eos|>, <|sil|>)"
            )
        if self.audio_config.output_dim != self.text_config.hidden_size:
            raise ValueError(
                f"audio_config.output_dim ({self.audio_config.output_dim}) must equal the LLM width "
                f"text_config.hidden_size ({self.text_config.hidden_size})"
            )

    @classmethod
    def tiny(
        cls,
        vocab_size: int = 320,
        text_overrides: dict | None = None,
        audio_token_index: int | None = None,
        **audio_overrides,
    ) -> FunAudioChatConfig:
        """A seconds-to-build config for tests: LLM width 64, SRH width 48, encoder width 32.

        Special text ids sit at the top of the vocabulary: ``<|AUDIO|>`` = vocab-10, ``<|audio_bos|>``
        = vocab-9, ``<|audio_eos|>`` = vocab-8, ``<|sil|>`` = vocab-7, bos = vocab-6,
        ``<|im_end|>`` = vocab-5, pad = vocab-4. ``text_overrides`` (e.g. the ids of a real tokenizer) and
        ``audio_token_index`` replace these; ``audio_overrides`` change ``audio_config`` fields.
        """
        v = vocab_size
        text = {
            "model_type": "qwen3",
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "intermediate_size": 128,
            "vocab_size": v,
            "rope_theta": 10000.0,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": False,
            "sliding_window": None,
            "use_sliding_window": False,
            "audio_bos_index": v - 9,
            "audio_eos_index": v - 8,
            "sil_index": v - 7,
            "bos_token_id": v - 6,
            "eos_token_id": v - 5,
            "pad_token_id": v - 4,
        }
        crq = {
            "model_type": "qwen3",
            "hidden_size": 48,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 12,
            "intermediate_size": 96,
            "rope_theta": 10000.0,
            "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-6,
            "vocab_size": 6565,
            "sliding_window": None,
            "use_sliding_window": False,
        }
        audio = {
            "num_mel_bins": 128,
            "d_model": 32,
            "encoder_layers": 2,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "output_dim": 64,
            "crq_transformer_config": crq,
        }
        audio.update(audio_overrides)
        text.update(text_overrides or {})
        return cls(
            audio_config=audio,
            text_config=text,
            audio_token_index=v - 10 if audio_token_index is None else audio_token_index,
        )


def tiny_config_for(processor, text_overrides: dict | None = None, **overrides) -> FunAudioChatConfig:
    """``FunAudioChatConfig.tiny`` whose vocabulary and special ids are those of ``processor``'s text
    tokenizer and whose ``group_size`` is the processor's (tests, the demo model); ``text_overrides``
    change the LLM's sizes, ``overrides`` go to ``FunAudioChatConfig.tiny``."""
    ids = processor.token_ids
    overrides.setdefault("group_size", processor.group_size)
    text = {
        **(text_overrides or {}),
        "audio_bos_index": ids.audio_bos_index,
        "audio_eos_index": ids.audio_eos_index,
        "sil_index": ids.sil_index,
        "bos_token_id": None,
        "eos_token_id": ids.im_end,
        "pad_token_id": ids.pad,
    }
    return FunAudioChatConfig.tiny(
        vocab_size=len(processor.tokenizer),
        text_overrides=text,
        audio_token_index=ids.audio_token_index,
        **overrides,
    )
