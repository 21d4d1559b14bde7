"""The speech-model stages of the demo recipe: the model's shape (``demo_model_spec``) and its training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .context import StageContext, fit_recipe

# the demo model's speech parts: the audio encoder (to the LLM's width) and the SRH
DEMO_AUDIO = {"d_model": 128, "encoder_layers": 3, "encoder_attention_heads": 4, "encoder_ffn_dim": 512}
DEMO_SRH = {
    "model_type": "qwen3",
    "hidden_size": 128,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "intermediate_size": 384,
    "rope_theta": 10000.0,
    "max_position_embeddings": 16384,
    "rms_norm_eps": 1e-6,
    "vocab_size": 6565,
}
TEXT_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "rope_theta",
    "max_position_embeddings",
    "rms_norm_eps",
    "tie_word_embeddings",
)


def demo_model_spec(text_lm_folder: Path, processor_folder: Path, seed: int) -> dict[str, Any]:
    """The ``model`` argument of the speech stages (``llm.module.build_model``): a Fun-Audio-Chat model
    whose LLM has the text LLM's sizes and special ids and starts from its weights (``llm_from``), with
    ``DEMO_AUDIO`` encoders projecting to the LLM's width and the ``DEMO_SRH`` head."""
    from funaudiochat.drsr.processing import FunAudioChatProcessor

    llm = json.loads((text_lm_folder / "config.json").read_text())
    ids = FunAudioChatProcessor.from_pretrained(processor_folder).token_ids
    text = {name: llm[name] for name in TEXT_FIELDS if name in llm}
    text.update(
        audio_bos_index=ids.audio_bos_index,
        audio_eos_index=ids.audio_eos_index,
        sil_index=ids.sil_index,
        bos_token_id=None,
        eos_token_id=ids.im_end,
        pad_token_id=ids.pad,
    )
    config = {
        "preset": "tiny",
        "vocab_size": llm["vocab_size"],
        "audio_token_index": ids.audio_token_index,
        "text_overrides": text,
        "output_dim": llm["hidden_size"],
        **DEMO_AUDIO,
        "crq_transformer_config": DEMO_SRH,
    }
    return {"config": config, "llm_from": str(text_lm_folder), "seed": seed}


def run_pre_alignment(build: StageContext) -> dict[str, Any]:
    text_lm = build.require("text_lm", "pre_alignment") / "model"
    processor = build.require("text_tokenizer", "pre_alignment")
    conversations = build.require("conversations", "pre_alignment")
    run = build.folder("pre_alignment") / "run"
    spec = demo_model_spec(text_lm, processor, build.settings.seed)
    extra = {"model": {"model": spec}}
    overrides = [
        f"data.train={conversations / 'train.jsonl'}",
        f"data.processor={processor}",
        f"trainer.max_steps={build.settings.pre_alignment_steps}",
        f"model.lr={build.settings.pre_alignment_lr}",
        "model.warmup_steps=50",
        f"seed={build.settings.seed}",
    ]
    fit_recipe("pre_alignment", run, overrides, extra)
    return {"steps": build.settings.pre_alignment_steps, "model": str(run / "model")}
