"""The model against golden outputs of the official code, checkpoint round trips and bad input.

Golden tensors (tests/drsr/golden/, see its README): a tiny random model saved by the official
``FunAudioChatForConditionalGeneration`` (commit 8ba984b, transformers 4.52.3) in the official layout,
its forward losses/logits on a training batch, and its greedy generations.
"""

from pathlib import Path

import pytest
import torch
from funaudiochat.drsr import (
    DecodingConfig,
    FunAudioChatConfig,
    FunAudioChatForConditionalGeneration,
    SamplingConfig,
    generate,
)
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

GOLDEN = Path(__file__).parent / "golden"
FORWARD_KEYS = [
    "input_ids",
    "attention_mask",
    "position_ids",
    "labels",
    "input_features",
    "feature_attention_mask",
    "speech_ids",
    "speech_attention_mask",
    "text_ids",
    "text_attention_mask",
    "feature_exist_mask",
]
PROMPT_KEYS = [
    "input_ids",
    "attention_mask",
    "input_features",
    "feature_attention_mask",
    "speech_ids",
    "speech_attention_mask",
    "feature_exist_mask",
]


@pytest.fixture(scope="module")
def official():
    return FunAudioChatForConditionalGeneration.from_pretrained(GOLDEN / "tiny_official").eval()


def test_official_folder_loads_with_tied_head(official):
    assert official.audio_invert_tower.lm_head.weight is official.audio_tower.embed_tokens.weight
    pos = official.continuous_audio_tower.positional_embedding
    assert torch.isfinite(pos).all() and pos[0, 32 // 2] == 1.0  # cos(0) of the sinusoid table


def test_auto_classes_load_the_official_folder(official):
    config = AutoConfig.from_pretrained(GOLDEN / "tiny_official")
    assert isinstance(config, FunAudioChatConfig) and config.audio_token_index == 310
    for auto in (AutoModel, AutoModelForSeq2SeqLM):
        model = auto.from_pretrained(GOLDEN / "tiny_official")
        assert isinstance(model, FunAudioChatForConditionalGeneration)
        torch.testing.assert_close(
            model.language_model.lm_head.weight, official.language_model.lm_head.weight
        )


def test_forward_losses_and_logits_match_the_official_code(official):
    g = load_file(GOLDEN / "forward.safetensors")
    with torch.no_grad():
        out = official(**{k: g[k].clone() for k in FORWARD_KEYS}, return_speech_logits=True)
        assert official(**{k: g[k].clone() for k in FORWARD_KEYS}).speech_logits is None
    torch.testing.assert_close(out.text_loss, g["text_loss"], rtol=0, atol=2e-5)
    torch.testing.assert_close(out.speech_loss, g["speech_loss"], rtol=0, atol=2e-5)
    torch.testing.assert_close(out.loss, g["loss"], rtol=0, atol=4e-5)
    torch.testing.assert_close(out.text_logits, g["text_logits"], rtol=0, atol=1e-5)
    torch.testing.assert_close(out.speech_logits[..., :256], g["speech_logits_first256"], rtol=0, atol=1e-5)
    # the targets returned beside the logits are those of the speech loss
    targets = out.speech_targets
    assert targets.shape == out.speech_logits.shape[:2]
    recomputed = torch.nn.functional.cross_entropy(
        out.speech_logits.flatten(0, 1).float(), targets.flatten(), ignore_index=official.config.ignore_index
    )
    torch.testing.assert_close(recomputed, out.speech_loss, rtol=0, atol=1e-5)


def test_prev_code_transform_acts_in_training_only(official):
    """``prev_code_transform`` (training augmentation) sees the SRH's previous-token ids in train mode
    and changes the speech loss; in eval mode it is not called."""
    g = load_file(GOLDEN / "forward.safetensors")
    seen = []

    def shift(prev):
        seen.append(prev.clone())
        return torch.where((prev >= 0) & (prev < 6561), 0, prev)  # every real code becomes code 0

    official.prev_code_transform = shift
    try:
        with torch.no_grad():
            plain = official(**{k: g[k].clone() for k in FORWARD_KEYS})
            assert not seen
            official.train()
            shifted = official(**{k: g[k].clone() for k in FORWARD_KEYS})
    finally:
        official.eval()
        official.prev_code_transform = None
    assert len(seen) == 1 and ((seen[0] >= 0) & (seen[0] < 6561)).any()
    assert (shifted.speech_loss - plain.speech_loss).abs() > 1e-4
    torch.testing.assert_close(shifted.text_loss, plain.text_loss, rtol=0, atol=1e-5)


def test_speech_logits_without_speech_targets_match_the_official_code(official):
    """``return_speech_logits=True`` when nothing in the batch has speech targets, against the official
    code (golden README: srh_no_speech_targets). Without speech labels (a text-only batch; user audio with
    no labels) the official head adds no previous-token embedding; with labels but no speech trained it
    adds the pad embedding everywhere. Before the fix both got the BOS embedding (off by 0.13 to 0.27)."""
    g = load_file(GOLDEN / "forward.safetensors")
    want = load_file(GOLDEN / "srh_no_speech_targets.safetensors")
    audio = {k: g[k].clone() for k in FORWARD_KEYS if k != "labels"}
    with torch.no_grad():
        text_only = official(
            input_ids=want["text_input_ids"],
            attention_mask=want["text_attention_mask"],
            position_ids=want["text_position_ids"],
            return_speech_logits=True,
        )
        user_audio = official(**audio, return_speech_logits=True)
        untrained = official(**audio, labels=want["notarget_labels"].clone(), return_speech_logits=True)
    cases = [
        (text_only, "text_speech_logits_first64", 12),
        (user_audio, "audio_speech_logits_first64", 45),
        (untrained, "notarget_speech_logits_first64", 45),
    ]
    for out, key, steps in cases:
        assert out.speech_logits.shape == (2, steps * 5, 6565), key
        torch.testing.assert_close(out.speech_logits[..., :64], want[key], rtol=0, atol=2e-6, msg=key)
    assert untrained.speech_loss is None  # no targets, no speech loss


def test_forward_does_not_modify_its_inputs(official):
    g = load_file(GOLDEN / "forward.safetensors")
    inputs = {k: g[k].clone() for k in FORWARD_KEYS}
    with torch.no_grad():
        official(**inputs)
    for k in FORWARD_KEYS:
        assert torch.equal(inputs[k], g[k]), k  # the official forward rewrites labels in place; ours must not


def test_srh_in_place_ungroup_trains_like_the_out_of_place_op(monkeypatch):
    """The SRH adds the previous-token embeddings into pre_matching's output (ops.ungroup_): a training
    backward gives the gradients of the out-of-place ops.ungroup (lm_head.weight, tied, included)."""
    from funaudiochat.drsr import ops

    model = FunAudioChatForConditionalGeneration.from_pretrained(GOLDEN / "tiny_official").train()
    g = load_file(GOLDEN / "forward.safetensors")
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]

    def loss_and_grads() -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
        torch.manual_seed(0)  # the same dropout masks (if any) in both runs
        out = model(**{k: g[k].clone() for k in FORWARD_KEYS})
        grads = torch.autograd.grad(out.loss, [p for _, p in params], allow_unused=True)
        return out.loss.detach(), dict(zip([name for name, _ in params], grads, strict=True))

    calls = []
    inplace = ops.ungroup_
    monkeypatch.setattr(ops, "ungroup_", lambda *a, **kw: calls.append(1) or inplace(*a, **kw))
    loss, grads = loss_and_grads()
    assert calls, "SpeechRefinedHead.forward no longer calls ops.ungroup_"
    monkeypatch.setattr(ops, "ungroup_", ops.ungroup)
    want_loss, want_grads = loss_and_grads()
    torch.testing.assert_close(loss, want_loss, rtol=0, atol=0)
    srh = "audio_invert_tower.pre_matching.weight"
    assert grads[srh] is not None and grads[srh].abs().sum() > 0
    for name, grad in grads.items():
        if want_grads[name] is None:
            assert grad is None, name
        else:
            torch.testing.assert_close(grad, want_grads[name], rtol=1e-5, atol=1e-7, msg=name)


def test_training_forward_under_bf16_autocast_is_close_to_float32():
    """Mixed-precision training (``trainer.precision=bf16-mixed``): the SRH's bf16 pre_matching output
    meets the float32 speech table in ops.ungroup_; the loss stays close to the float32 one."""
    model = FunAudioChatForConditionalGeneration.from_pretrained(GOLDEN / "tiny_official").train()
    g = load_file(GOLDEN / "forward.safetensors")
    torch.manual_seed(0)
    want = model(**{k: g[k].clone() for k in FORWARD_KEYS}).loss
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = model(**{k: g[k].clone() for k in FORWARD_KEYS}).loss
    got.backward()
    assert torch.isfinite(got) and abs(float(got) - float(want)) < 0.02 * abs(float(want))
    assert model.audio_invert_tower.pre_matching.weight.grad.dtype == torch.float32


def _full_and_selected(model, inputs):
    """The training forward with the full speech logits, then with the default (logits at the targets
    only), each with the gradients of its loss; and the ``[rows, length]`` the SRH's decoder ran on."""
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    decoded = []
    model.audio_invert_tower.crq_transformer.register_forward_hook(
        lambda module, args, kwargs, out: decoded.append(tuple(kwargs["inputs_embeds"].shape[:2])),
        with_kwargs=True,
    )
    results = []
    for full in (True, None):
        out = model(**inputs, return_speech_logits=full, return_sequence_logps=True)
        assert (out.speech_logits is not None) == bool(full)
        grads = torch.autograd.grad(out.loss, [p for _, p in params], allow_unused=True)
        results.append((out, dict(zip([n for n, _ in params], grads, strict=True))))
    (full, full_grads), (picked, picked_grads) = results
    torch.testing.assert_close(picked.speech_loss, full.speech_loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(picked.speech_logps, full.speech_logps, rtol=1e-6, atol=1e-4)
    assert picked.speech_logps.shape == (inputs["labels"].shape[0],)
    for name, grad in full_grads.items():
        if grad is None:
            assert picked_grads[name] is None, name
        else:
            torch.testing.assert_close(picked_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    return picked, decoded


def test_speech_loss_from_target_positions_only_equals_the_full_logits():
    """By default the SRH head runs only where there are speech targets (and its decoder stops after the
    last one): the loss, the per-row log-probabilities and every gradient equal those of the full logits."""
    model = FunAudioChatForConditionalGeneration.from_pretrained(GOLDEN / "tiny_official").train()
    g = load_file(GOLDEN / "forward.safetensors")
    inputs = {k: g[k].clone() for k in FORWARD_KEYS}
    labels = inputs["labels"]
    # a batch whose rows end differently: the last trained positions of row 0 are hidden from the loss
    trained = (labels[0] != -100).nonzero()[:, 0]
    labels[0, trained[-3:]] = -100
    labels[:, -4:] = -100
    _, decoded = _full_and_selected(model, inputs)
    assert decoded[0][1] == labels.shape[1] * 5 and decoded[1][1] < decoded[0][1], "stopped after the last"


def test_rows_without_speech_targets_skip_the_speech_head_and_change_nothing():
    """A row with no speech target (a text reply in a mixed batch) is left out of the SRH's decoder: the
    loss, the per-row log-probabilities (0 for that row) and every gradient equal the full logits'."""
    model = FunAudioChatForConditionalGeneration.from_pretrained(GOLDEN / "tiny_official").train()
    g = load_file(GOLDEN / "forward.safetensors")
    inputs = {k: g[k].clone() for k in FORWARD_KEYS}
    labels = inputs["labels"][1]
    speech = (inputs["input_ids"][1] == model.config.audio_token_index) | (
        labels == model.config.text_config.audio_eos_index
    )
    labels[speech] = -100  # row 1 keeps its text targets, loses its speech ones (the audio and its EOS)
    assert (labels != -100).any()
    picked, decoded = _full_and_selected(model, inputs)
    assert [rows for rows, _ in decoded] == [2, 1], "both rows for the full logits, one for the loss"
    assert picked.speech_loss is not None and float(picked.speech_logps[1]) == 0.0


@pytest.mark.parametrize("tag,penalty", [("rp1", 1.0), ("rp12", 1.2)])
def test_greedy_generation_matches_the_official_code(official, tag, penalty):
    g = load_file(GOLDEN / "generate.safetensors")
    config = DecodingConfig(
        max_new_tokens=24, speech=SamplingConfig(do_sample=False, repetition_penalty=penalty)
    )
    out = generate(official, {k: g[k] for k in PROMPT_KEYS}, config)
    assert torch.equal(out.sequences, g[f"{tag}_generated_input_ids"])
    assert torch.equal(out.speech_ids[0], g[f"{tag}_speech_ids"][0])


def test_batch_of_two_row_zero_matches_the_official_code(official):
    """The official batch-2 run is only right for its unpadded row (its SRH ignores padding); ours gives
    that row too, and the padded row equals its own single run (tests/drsr/test_generation.py)."""
    g = load_file(GOLDEN / "generate.safetensors")
    config = DecodingConfig(max_new_tokens=24, speech=SamplingConfig(do_sample=False, repetition_penalty=1.2))
    out = generate(official, {k: g[f"b2_{k}"] for k in PROMPT_KEYS}, config)
    assert torch.equal(out.sequences[0], g["b2_rp12_generated_input_ids"][0])
    assert torch.equal(out.speech_ids[0], g["b2_rp12_speech_ids"][0])


def test_save_pretrained_round_trip_in_official_layout(tmp_path, official):
    official.save_pretrained(tmp_path, max_shard_size="1MB")
    files = sorted(p.name for p in tmp_path.iterdir())
    assert "config.json" in files and "model.safetensors.index.json" in files
    assert sum(f.endswith(".safetensors") for f in files) > 1
    keys = set()
    for f in tmp_path.glob("*.safetensors"):
        keys |= set(load_file(f))
    official_keys = set(load_file(GOLDEN / "tiny_official" / "model.safetensors"))
    assert keys == official_keys  # same names; the tied SRH head is not written
    again = FunAudioChatForConditionalGeneration.from_pretrained(tmp_path)
    for k, v in official.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k


@pytest.mark.parametrize(
    "mutation,message",
    [
        (
            lambda sd: sd.pop("audio_tower.output_matching.weight"),
            r"missing keys: audio_tower\.output_matching",
        ),
        (
            lambda sd: sd.__setitem__("audio_tower.extra", torch.zeros(2)),
            r"unexpected keys: audio_tower\.extra",
        ),
        (
            lambda sd: sd.__setitem__("audio_tower.output_matching.weight", torch.zeros(64, 63)),
            r"mis-shaped keys: .*audio_tower\.output_matching\.weight",
        ),
    ],
    ids=["missing", "unexpected", "misshaped"],
)
def test_bad_checkpoints_are_refused(tmp_path, mutation, message):
    state = load_file(GOLDEN / "tiny_official" / "model.safetensors")
    mutation(state)
    (tmp_path / "config.json").write_text((GOLDEN / "tiny_official" / "config.json").read_text())
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=message):
        FunAudioChatForConditionalGeneration.from_pretrained(tmp_path)


def test_full_size_module_shapes_follow_the_reference():
    """Reference §2.4 shapes at the released sizes, on the meta device."""
    with torch.device("meta"):
        model = FunAudioChatForConditionalGeneration(FunAudioChatConfig())
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["audio_tower.embed_tokens.weight"] == (6565, 4096)
    assert shapes["audio_tower.output_matching.weight"] == (4096, 4096)
    assert shapes["audio_tower.continual_output_matching.weight"] == (4096, 4096)
    assert shapes["audio_invert_tower.pre_matching.weight"] == (5 * 4096, 4096)
    assert shapes["audio_invert_tower.input_matching.weight"] == (1024, 4096)
    assert shapes["audio_invert_tower.output_matching.weight"] == (4096, 1024)
    assert shapes["continuous_audio_tower.proj.weight"] == (4096, 1280)
    assert shapes["continuous_audio_tower.audio_bos_eos_token.weight"] == (2, 4096)
    assert shapes["language_model.lm_head.weight"] == (151936, 4096)
    assert "audio_invert_tower.crq_transformer.embed_tokens.weight" not in shapes
    assert shapes["audio_invert_tower.crq_transformer.layers.27.self_attn.q_proj.weight"] == (16 * 128, 1024)
    assert shapes["continuous_audio_tower.layers.31.fc1.weight"] == (5120, 1280)
    assert shapes["language_model.model.layers.35.mlp.gate_proj.weight"] == (12288, 4096)


def test_concat_grouping_option():
    """The paper's concatenation grouping: a kD x D adapter instead of mean + D x D."""
    torch.manual_seed(0)
    model = FunAudioChatForConditionalGeneration(FunAudioChatConfig.tiny(grouping="concat")).eval()
    assert model.audio_tower.output_matching.weight.shape == (64, 5 * 64)
    ids = torch.randint(0, 6561, (2, 10))
    grouped = model.audio_tower.group_speech(ids)
    table = model.audio_tower.embed_tokens.weight
    expected = model.audio_tower.output_matching(table[ids].reshape(2, 2, 5 * 64))
    torch.testing.assert_close(grouped, expected)


# ---- bad input ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return FunAudioChatForConditionalGeneration(FunAudioChatConfig.tiny()).eval()


def _audio_batch(config, groups=3, slots=None):
    a = config.audio_token_index
    slots = groups if slots is None else slots
    ids = torch.tensor(
        [[1, 2, config.text_config.audio_bos_index] + [a] * slots + [config.text_config.audio_eos_index]]
    )
    return dict(
        input_ids=ids,
        speech_ids=torch.full((1, 5 * groups), 6563),
        speech_attention_mask=torch.ones(1, 5 * groups),
    )


def test_error_placeholders_do_not_match_features(tiny):
    batch = _audio_batch(tiny.config, groups=3, slots=4)
    with pytest.raises(ValueError, match=r"input_ids hold 4 <\|AUDIO\|> tokens .* give 3 5 Hz features"):
        tiny(**batch)


def test_error_placeholders_without_audio(tiny):
    batch = _audio_batch(tiny.config)
    with pytest.raises(ValueError, match="placeholders but no speech_ids"):
        tiny(input_ids=batch["input_ids"])


def test_error_speech_ids_outside_the_vocabulary(tiny):
    batch = _audio_batch(tiny.config)
    batch["speech_ids"][0, 2] = 6565
    with pytest.raises(ValueError, match=r"speech_ids must lie in \[0, 6565\)"):
        tiny(**batch)
    batch["speech_ids"][0, 2] = -3
    with pytest.raises(ValueError, match=r"speech_ids must lie in \[0, 6565\)"):
        tiny(**batch)


def test_error_feature_rows_do_not_match_the_mask(tiny):
    batch = _audio_batch(tiny.config)
    batch.update(
        input_features=torch.zeros(2, 128, 60),
        feature_attention_mask=torch.ones(2, 60, dtype=torch.long),
        feature_exist_mask=torch.tensor([True]),
    )
    with pytest.raises(
        ValueError, match="feature_exist_mask marks 1 audios with features, but 2 feature rows"
    ):
        tiny(**batch)


def test_error_config_inconsistencies():
    with pytest.raises(ValueError, match="output_dim .* must equal the LLM width"):
        FunAudioChatConfig.tiny(output_dim=32)
    with pytest.raises(ValueError, match="grouping must be 'mean'"):
        FunAudioChatConfig.tiny(grouping="sum")
    text = FunAudioChatConfig.tiny().text_config.to_dict()
    del text["sil_index"]
    with pytest.raises(ValueError, match=r"text_config lacks the Fun-Audio-Chat fields \['sil_index'\]"):
        FunAudioChatConfig(audio_config=FunAudioChatConfig.tiny().audio_config.to_dict(), text_config=text)
