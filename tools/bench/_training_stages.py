"""The stages of ``tools/bench/training.py``: which stages it runs, the small model each trains, and the
synthetic batch each trains on (see that file's docstring for the sizes and shapes).

Kept apart from the measuring code so that each file stays short; ``training.py`` imports it by file name
(this folder is on ``sys.path`` when the bench runs as a script).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "packages" / "training" / "recipes"
STAGE_ORDER = ("tokenizer", "pre_alignment", "sft", "core_cocktail", "dpo", "vocoder_flow", "vocoder_hift")
KERNEL_STAGES = ("pre_alignment", "sft", "core_cocktail", "dpo")
UNITS = {
    "tokenizer": "utterance",
    "pre_alignment": "conversation",
    "sft": "conversation",
    "core_cocktail": "conversation",
    "dpo": "pair",
    "vocoder_flow": "utterance",
    "vocoder_hift": "segment",
}
FULL = {"batch": 8, "dpo_pairs": 4, "seconds_scale": 1.0, "steps": 8, "warmup": 2}
QUICK = {"batch": 2, "dpo_pairs": 1, "seconds_scale": 0.5, "steps": 2, "warmup": 1}

# ---- the speech LLM: Qwen3 LLM 512 x 4 layers, SRH 256 x 2 layers, encoder 128 x 2 layers ----------------

VOCAB = 1000
AUDIO_TOKEN, AUDIO_BOS, AUDIO_EOS, SIL, BOS, IM_END, PAD = (VOCAB - n for n in (10, 9, 8, 7, 6, 5, 4))
IM_START, NEWLINE, SYSTEM, USER, ASSISTANT = VOCAB - 11, 10, 20, 21, 22
TEXT_IDS = VOCAB - 20  # ordinary text tokens are drawn below this
SPEECH_CODES, SPEECH_BOS, SPEECH_PAD = 6561, 6561, 6563
GROUP, DELAY, IGNORE = 5, 10, -100
LLM_TEXT = {
    "model_type": "qwen3",
    "hidden_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 64,
    "intermediate_size": 1536,
    "vocab_size": VOCAB,
    "rope_theta": 10000.0,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "sliding_window": None,
    "use_sliding_window": False,
    "audio_bos_index": AUDIO_BOS,
    "audio_eos_index": AUDIO_EOS,
    "sil_index": SIL,
    "bos_token_id": BOS,
    "eos_token_id": IM_END,
    "pad_token_id": PAD,
}
LLM_SRH = {
    "model_type": "qwen3",
    "hidden_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "intermediate_size": 768,
    "rope_theta": 10000.0,
    "max_position_embeddings": 16384,
    "rms_norm_eps": 1e-6,
    "vocab_size": 6565,
    "sliding_window": None,
    "use_sliding_window": False,
}
LLM_AUDIO = {
    "num_mel_bins": 128,
    "d_model": 128,
    "encoder_layers": 2,
    "encoder_attention_heads": 2,
    "encoder_ffn_dim": 512,
    "output_dim": 512,
    "crq_transformer_config": LLM_SRH,
}
LLM_MODEL = {
    "config": {"text_config": LLM_TEXT, "audio_config": LLM_AUDIO, "audio_token_index": AUDIO_TOKEN},
    "seed": 0,
}
FLOW = {"pre_lookahead_channels": 256, "dim": 256, "depth": 4, "heads": 4, "dim_head": 64}
HIFT = {"base_channels": 128, "f0_cond_channels": 128}
HIFT_SEGMENT_FRAMES, HIFT_HOP = 52, 480


def uniform_int(generator: torch.Generator, low: float, high: float) -> int:
    return int(low + (high - low) * float(torch.rand((), generator=generator)))


def randint(generator: torch.Generator, high: int, size: int, low: int = 0) -> torch.Tensor:
    return torch.randint(low, high, (size,), generator=generator)


def pad_rows(rows: list[torch.Tensor], value: float, multiple_of: int = 1) -> torch.Tensor:
    """Right-pad 1-D (or ``[C, T]``, padded on T) tensors into one batch tensor."""
    width = max(max(r.shape[-1] for r in rows), 1)
    width = -(-width // multiple_of) * multiple_of
    out = torch.full((len(rows), *rows[0].shape[:-1], width), value, dtype=rows[0].dtype)
    for i, row in enumerate(rows):
        out[i, ..., : row.shape[-1]] = row
    return out


def length_mask(lengths: list[int], width: int) -> torch.Tensor:
    return (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()


def conversation_batch(n: int, scale: float, prompt_seed: int, answer_seed: int) -> dict[str, Any]:
    """``n`` spoken conversations in the official training layout (see ``training.py``): prompts drawn
    from ``prompt_seed``, assistant replies from ``answer_seed`` (DPO pairs share the prompts)."""
    gp = torch.Generator().manual_seed(prompt_seed)
    ga = torch.Generator().manual_seed(answer_seed)
    input_ids, labels, speech, text, features = [], [], [], [], []
    is_user = []
    for _ in range(n):
        user_frames = max(uniform_int(gp, 3 * 25 * scale, 5 * 25 * scale), GROUP)
        reply_frames = max(uniform_int(ga, 4 * 25 * scale, 8 * 25 * scale), DELAY + GROUP)
        user_slots, reply_slots = -(-user_frames // GROUP), -(-reply_frames // GROUP)
        system = randint(gp, TEXT_IDS, uniform_int(gp, 12, 20)).tolist()
        prompt = [IM_START, SYSTEM, NEWLINE, *system, IM_END, NEWLINE, IM_START, USER, NEWLINE, AUDIO_BOS]
        prompt += [AUDIO_TOKEN] * user_slots + [AUDIO_EOS, IM_END, NEWLINE, IM_START, ASSISTANT, NEWLINE]
        reply = [AUDIO_BOS] + [AUDIO_TOKEN] * reply_slots + [AUDIO_EOS, IM_END, NEWLINE]
        input_ids.append(torch.tensor(prompt + reply))
        labels.append(torch.tensor([IGNORE] * len(prompt) + reply))
        # user audio: speech rows of pad ids (its continuous features replace them), log-mel at 4 x 25 Hz
        speech.append(torch.full((user_frames,), SPEECH_PAD))
        text.append(torch.empty(0, dtype=torch.long))
        features.append(torch.randn(128, 4 * user_frames, generator=gp))
        is_user.append(True)
        codes = randint(ga, SPEECH_CODES, reply_frames - DELAY)
        speech.append(torch.cat([torch.full((DELAY,), SPEECH_BOS), codes]))
        text.append(randint(ga, TEXT_IDS, max(int(0.7 * reply_slots), 1)))
        is_user.append(False)
    ids = pad_rows(input_ids, PAD)
    mask = length_mask([len(r) for r in input_ids], ids.shape[1])
    speech_ids = pad_rows(speech, SPEECH_PAD, multiple_of=GROUP)
    flags = torch.tensor(is_user)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": (torch.arange(ids.shape[1])[None, :] * mask),
        "labels": pad_rows(labels, IGNORE),
        "speech_ids": speech_ids,
        "speech_attention_mask": length_mask([len(r) for r in speech], speech_ids.shape[1]),
        "text_ids": pad_rows(text, PAD),
        "text_attention_mask": ~flags,
        "feature_exist_mask": flags,
        "input_features": pad_rows(features, 0.0),
        "feature_attention_mask": length_mask(
            [f.shape[1] for f in features], max(f.shape[1] for f in features)
        ),
    }


def tokenizer_batch(n: int, scale: float) -> dict[str, Any]:
    from funaudiochat.training.tokenizer import CHARACTERS

    g = torch.Generator().manual_seed(0)
    seconds = [uniform_int(g, 400 * scale, 600 * scale) / 100 for _ in range(n)]
    mels = [torch.randn(128, int(s * 100), generator=g) for s in seconds]
    targets = [randint(g, len(CHARACTERS) + 1, int(s * 12), low=1) for s in seconds]  # 0 is the CTC blank
    return {
        "utt": [f"utt{i}" for i in range(n)],
        "text": ["" for _ in range(n)],
        "mel": pad_rows(mels, 0.0),
        "mel_len": torch.tensor([m.shape[1] for m in mels]),
        "targets": pad_rows(targets, 0),
        "target_len": torch.tensor([len(t) for t in targets]),
    }


def flow_batch(n: int, scale: float) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    tokens = [randint(g, SPEECH_CODES, uniform_int(g, 100 * scale, 200 * scale)) for _ in range(n)]
    mels = [torch.randn(80, 2 * len(t), generator=g) for t in tokens]
    return {
        "utt": [f"utt{i}" for i in range(n)],
        "embedding": torch.randn(n, 192, generator=g),
        "speech_token": pad_rows(tokens, 0),
        "speech_token_len": torch.tensor([len(t) for t in tokens]),
        "speech_feat": pad_rows(mels, 0.0).transpose(1, 2).contiguous(),
        "speech_feat_len": torch.tensor([m.shape[1] for m in mels]),
    }


def hift_batch(n: int, scale: float) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    frames = int(HIFT_SEGMENT_FRAMES * scale)
    pitch = 80 + 220 * torch.rand(n, frames, generator=g)
    pitch[:, : frames // 5] = 0.0  # an unvoiced stretch
    return {
        "utt": [f"utt{i}" for i in range(n)],
        "embedding": torch.randn(n, 192, generator=g),
        "speech": 0.1 * torch.randn(n, frames * HIFT_HOP, generator=g),
        "speech_len": torch.full((n,), frames * HIFT_HOP),
        "speech_feat": torch.randn(n, frames, 80, generator=g),
        "speech_feat_len": torch.full((n,), frames),
        "pitch_feat": pitch,
        "pitch_feat_len": torch.full((n,), frames),
    }


# ---- recipes -----------------------------------------------------------------------------------------------


def recipe_settings(stage: str, total_steps: int) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The recipe's ``model:`` arguments with this bench's small model (no export), its Trainer settings that
    cost time per step (gradient clipping), and its seed."""
    recipe = OmegaConf.load(RECIPES / f"{stage}.yaml")
    model = OmegaConf.to_container(recipe.model, resolve=False)
    model.pop("export_dir", None)
    model.pop("export_path", None)
    if stage in KERNEL_STAGES:
        model["model"] = LLM_MODEL
    if stage == "core_cocktail":  # stay in stage 1: the merge is a one-off, not a training step
        model["stage1_steps"] = max(int(model.get("stage1_steps", 1)), total_steps)
    elif stage == "tokenizer":
        from funaudiochat.training.tokenizer import CHARACTERS

        model["vocabulary"] = list(CHARACTERS)
    elif stage == "vocoder_flow":
        model["flow"] = dict(FLOW)
    elif stage == "vocoder_hift":
        model["hift"] = dict(HIFT)
        model["mel"] = None  # the recipe's ${data.mel}: {} = the default mel
    for key, value in model.items():
        if isinstance(value, str) and "${" in value:
            raise ValueError(
                f"{stage}.yaml: model.{key} = {value!r} is an interpolation this bench cannot fill"
            )
    trainer = {}
    clip = OmegaConf.select(recipe, "trainer.gradient_clip_val", default=None)
    if clip is not None:
        trainer["gradient_clip_val"] = float(clip)
    return model, trainer, int(OmegaConf.select(recipe, "seed", default=0) or 0)


def size_batches(size: dict[str, Any]) -> int:
    """Training steps per run: warm-up, timed, and the profiled one."""
    return size["warmup"] + size["steps"] + 1


def build_batch(stage: str, size: dict[str, Any]) -> tuple[dict[str, Any], int]:
    n, scale = size["batch"], size["seconds_scale"]
    if stage == "dpo":
        pairs = size["dpo_pairs"]
        tasks = ("robustness", "instruction_following", "audio_understanding", "empathy")
        batch = {
            "chosen": conversation_batch(pairs, scale, prompt_seed=1, answer_seed=2),
            "rejected": conversation_batch(pairs, scale, prompt_seed=1, answer_seed=3),
            "task": [tasks[i % len(tasks)] for i in range(pairs)],
        }
        return batch, pairs
    if stage in KERNEL_STAGES:
        return conversation_batch(n, scale, prompt_seed=1, answer_seed=2), n
    if stage == "tokenizer":
        return tokenizer_batch(n, scale), n
    if stage == "vocoder_flow":
        return flow_batch(n, scale), n
    return hift_batch(n, scale), n
