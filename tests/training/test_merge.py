"""Core-Cocktail merge: exact averages of the shared LLM, other modules kept, clear errors."""

import pytest
import torch
from funaudiochat.drsr import FunAudioChatConfig, FunAudioChatForConditionalGeneration
from funaudiochat.training.merge import merge_checkpoints, merge_state_dicts
from transformers import AutoModelForCausalLM


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """M1: a tiny Fun-Audio-Chat model saved in shards; M0: a plain causal LM of the same text config
    (tied output embedding, so it has no lm_head.weight) with other weights."""
    root = tmp_path_factory.mktemp("merge")
    torch.manual_seed(0)
    config = FunAudioChatConfig.tiny()
    tuned = FunAudioChatForConditionalGeneration(config).eval()
    tuned.save_pretrained(root / "m1", max_shard_size="200KB")
    torch.manual_seed(1)
    text_config = type(config.text_config)(**{**config.text_config.to_dict(), "tie_word_embeddings": True})
    base = AutoModelForCausalLM.from_config(text_config).eval()
    base.save_pretrained(root / "m0")
    return root, tuned, base


@pytest.mark.parametrize("alpha", [0.5, 0.3])
def test_merge_is_exact(checkpoints, alpha):
    root, tuned, base = checkpoints
    report = merge_checkpoints(root / "m0", root / "m1", root / f"merged{alpha}", alpha=alpha)
    merged = FunAudioChatForConditionalGeneration.from_pretrained(root / f"merged{alpha}").eval()
    base_sd = base.state_dict()
    for key, value in merged.state_dict().items():
        mine = tuned.state_dict()[key]
        if key.startswith("language_model."):
            src = key.removeprefix("language_model.")
            if src == "lm_head.weight":
                src = "model.embed_tokens.weight"  # M0 ties its output embedding
            expected = alpha * mine + (1 - alpha) * base_sd[src]
            assert torch.equal(value, expected), key
        else:
            assert torch.equal(value, mine), key
    assert report.averaged and report.kept
    assert all(k.startswith("language_model.") for k in report.averaged)
    assert (root / f"merged{alpha}" / "config.json").is_file()


def test_alpha_ends_give_the_inputs():
    a = {"language_model.w": torch.randn(3, 2), "audio_tower.w": torch.randn(2)}
    b = {"language_model.w": torch.randn(3, 2)}
    assert torch.equal(merge_state_dicts(b, a, alpha=1.0)["language_model.w"], a["language_model.w"])
    assert torch.equal(merge_state_dicts(b, a, alpha=0.0)["language_model.w"], b["language_model.w"])
    assert merge_state_dicts(b, a, alpha=0.0)["audio_tower.w"] is a["audio_tower.w"]


def test_grown_embeddings_keep_the_new_rows_and_bf16_stays_bf16():
    tuned = {"language_model.model.embed_tokens.weight": torch.randn(6, 4).bfloat16()}
    base = {"model.embed_tokens.weight": torch.randn(4, 4).bfloat16()}
    merged = merge_state_dicts(base, tuned, alpha=0.5)["language_model.model.embed_tokens.weight"]
    assert merged.dtype == torch.bfloat16
    assert torch.equal(merged[4:], tuned["language_model.model.embed_tokens.weight"][4:])
    expected = (
        0.5 * tuned["language_model.model.embed_tokens.weight"][:4].float()
        + 0.5 * base["model.embed_tokens.weight"].float()
    ).bfloat16()
    assert torch.equal(merged[:4], expected)


def test_errors(checkpoints, tmp_path):
    root, _, _ = checkpoints
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        merge_state_dicts({}, {}, alpha=1.5)
    with pytest.raises(ValueError, match="M0 lacks 1 tensors of M1's shared LLM: language_model.extra"):
        merge_state_dicts({}, {"language_model.extra": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"M1 has shape \[2, 3\] but M0 has \[2, 4\]"):
        merge_state_dicts({"w": torch.zeros(2, 4)}, {"language_model.w": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="no model.safetensors or model.safetensors.index.json"):
        merge_checkpoints(tmp_path, root / "m1", tmp_path / "out")
    (tmp_path / "exists").mkdir()
    with pytest.raises(ValueError, match="already exists"):
        merge_checkpoints(root / "m0", root / "m1", tmp_path / "exists")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing half-written left


def test_merge_command(checkpoints, capsys):
    from funaudiochat.training.cli import main

    root, _, _ = checkpoints
    out = root / "merged_cli"
    args = ["merge", "--base", str(root / "m0"), "--tuned", str(root / "m1"), "--alpha", "0.25", "--out"]
    assert main([*args, str(out)]) == 0
    assert "LLM tensors averaged" in capsys.readouterr().out
    assert main([*args, str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
