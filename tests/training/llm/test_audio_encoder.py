"""``AudioEncoderModule``: the continuous audio tower learns to transcribe with CTC, its export is what
``build_model(audio_encoder_from=...)`` starts the speech model from, and bad settings are refused."""

import lightning as L
import pytest
import torch
from funaudiochat.training.llm.audio_encoder import AudioEncoderModule
from funaudiochat.training.llm.module import build_model
from funaudiochat.training.tokenizer.data import TokenizerDataModule

# the tower of FunAudioChatConfig.tiny()
TINY_TOWER = {"d_model": 32, "encoder_layers": 2, "encoder_attention_heads": 2, "encoder_ffn_dim": 64}
SAID = ["one two three", "four five six", "seven eight nine", "ten eleven twelve"]


@pytest.fixture(scope="module")
def said(tmp_path_factory, espeak):
    folder = tmp_path_factory.mktemp("said")
    for i, text in enumerate(SAID):
        espeak(text, folder / f"utt{i}.wav", "en-us", 120)
        (folder / f"utt{i}.txt").write_text(text + "\n", encoding="utf-8")
    return folder


def test_the_tower_learns_to_transcribe_and_the_speech_model_starts_from_it(
    said, tmp_path, recorder, quiet_trainer
):
    torch.manual_seed(0)
    export = tmp_path / "tower.safetensors"
    data = TokenizerDataModule(train=str(said), units="chars", batch_size=4, shuffle=False, cache_audio=True)
    module = AudioEncoderModule(
        encoder={**TINY_TOWER, "output_dim": 64}, lr=3e-3, warmup_steps=0, export_path=str(export)
    )
    losses = recorder("train/loss")
    L.Trainer(max_steps=40, callbacks=[losses], **quiet_trainer).fit(module, datamodule=data)
    first, last = losses.values["train/loss"][0], losses.values["train/loss"][-1]
    assert last < 0.6 * first, (first, last)

    model = build_model({"config": {"preset": "tiny"}, "audio_encoder_from": str(export)})
    tower = model.continuous_audio_tower.state_dict()
    trained = module.encoder.state_dict()
    assert set(tower) == set(trained)
    for name, tensor in trained.items():
        assert torch.equal(tower[name], tensor), name


def test_a_tower_that_does_not_fit_the_model_is_refused(tmp_path):
    export = tmp_path / "wide.safetensors"
    AudioEncoderModule(encoder={**TINY_TOWER, "output_dim": 96}).export(export)
    with pytest.raises(ValueError, match=f"audio_encoder_from {export}.*proj.weight"):
        build_model({"config": {"preset": "tiny"}, "audio_encoder_from": str(export)})
    with pytest.raises(ValueError, match="not found"):
        build_model({"config": {"preset": "tiny"}, "audio_encoder_from": str(tmp_path / "none.safetensors")})


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="must end in .safetensors"):
        AudioEncoderModule(encoder=TINY_TOWER, export_path="tower.pt")
    with pytest.raises(ValueError, match="short_policy must be one of"):
        AudioEncoderModule(encoder=TINY_TOWER, short_policy="maybe")
    with pytest.raises(ValueError, match="CTC head is not built"):
        AudioEncoderModule(encoder=TINY_TOWER)(torch.zeros(1, 128, 100), torch.tensor([100]))


@pytest.fixture(scope="module")
def text_lm(tmp_path_factory):
    """A tiny Qwen3 folder (width 64, the tiny model's) with a BPE over the said words."""
    from funaudiochat.drsr.text_tokenizer import train_text_tokenizer
    from transformers import Qwen3Config, Qwen3ForCausalLM

    folder = tmp_path_factory.mktemp("text_lm")
    tokenizer = train_text_tokenizer(SAID * 4, vocab_size=300)
    tokenizer.save_pretrained(folder)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
    )
    torch.manual_seed(0)
    Qwen3ForCausalLM(config).save_pretrained(folder)
    return folder


def token_ctc_fit(said, text_lm, **settings):
    """The data and a tiny tower (width 64, the text LLM's) with the token CTC and ``settings``."""
    data = TokenizerDataModule(train=str(said), units="chars", batch_size=4, shuffle=False, cache_audio=True)
    tower = {**TINY_TOWER, "output_dim": 64}
    return data, AudioEncoderModule(encoder=tower, lr=3e-3, warmup_steps=0, text_lm=str(text_lm), **settings)


def test_the_groups_learn_to_be_the_llm_embeddings_of_the_words_said(
    said, text_lm, tmp_path, recorder, quiet_trainer
):
    from funaudiochat.base.weights import read_safetensors

    torch.manual_seed(0)
    export = tmp_path / "tower.safetensors"
    data, module = token_ctc_fit(said, text_lm, export_path=str(export))
    losses = recorder("train/token_loss")
    L.Trainer(max_steps=40, callbacks=[losses], **quiet_trainer).fit(module, datamodule=data)
    first, last = losses.values["train/token_loss"][0], losses.values["train/token_loss"][-1]
    assert last < 0.6 * first, (first, last)
    # the token classes are the LLM's own embedding rows (class i + 1 = token i), the blank is class 0
    targets, lengths = module.text_targets(["one two"])
    ids = module.text_tokenizer("one two", add_special_tokens=False).input_ids
    assert targets[0, : int(lengths[0])].tolist() == [i + 1 for i in ids]

    _, metadata = read_safetensors(export)
    assert metadata["grouped_output"] == "llm_input_embeddings"
    model = build_model({"config": {"preset": "tiny"}, "audio_encoder_from": str(export)})
    assert torch.equal(model.audio_tower.continual_output_matching.weight, torch.eye(64))


def test_without_an_llm_the_groups_learn_tokens_against_a_table_of_their_own(
    said, text_lm, tmp_path, recorder, quiet_trainer
):
    from funaudiochat.base.weights import read_safetensors

    torch.manual_seed(0)
    export = tmp_path / "tower.safetensors"
    data = TokenizerDataModule(train=str(said), units="chars", batch_size=4, shuffle=False, cache_audio=True)
    tower = {**TINY_TOWER, "output_dim": 64}
    # text_lm's folder read for its tokenizer alone: no LLM weights are loaded
    module = AudioEncoderModule(
        encoder=tower, lr=3e-3, warmup_steps=0, text_tokenizer=str(text_lm), export_path=str(export)
    )
    table = module.token_head.embeddings
    assert isinstance(table, torch.nn.Parameter) and table.shape == (len(module.text_tokenizer), 64)
    assert "token_head.embeddings" in module.state_dict()  # checkpointed: a killed fit resumes it
    start = table.detach().clone()
    losses = recorder("train/token_loss")
    L.Trainer(max_steps=40, callbacks=[losses], **quiet_trainer).fit(module, datamodule=data)
    first, last = losses.values["train/token_loss"][0], losses.values["train/token_loss"][-1]
    assert last < 0.6 * first, (first, last)
    assert not torch.equal(module.token_head.embeddings.detach(), start)

    # the groups are not in any LLM's space: the speech model's adapter does not start as the identity
    _, metadata = read_safetensors(export)
    assert "grouped_output" not in metadata
    model = build_model({"config": {"preset": "tiny"}, "audio_encoder_from": str(export)})
    assert not torch.equal(model.audio_tower.continual_output_matching.weight, torch.eye(64))
    with pytest.raises(ValueError, match="text_lm .* or text_tokenizer .*, not both"):
        AudioEncoderModule(encoder=tower, text_lm=str(text_lm), text_tokenizer=str(text_lm))
    with pytest.raises(ValueError, match="needs text_lm"):
        AudioEncoderModule(encoder=tower, text_tokenizer=str(text_lm), embed_weight=1.0)


def test_a_text_lm_of_another_width_or_without_embeddings_is_refused(text_lm, tmp_path):
    with pytest.raises(ValueError, match="embeddings of width 64, but the tower's output_dim is 96"):
        AudioEncoderModule(encoder={**TINY_TOWER, "output_dim": 96}, text_lm=str(text_lm))
    with pytest.raises(ValueError, match="text_lm .*: no model.safetensors or model.safetensors.index.json"):
        AudioEncoderModule(encoder={**TINY_TOWER, "output_dim": 64}, text_lm=str(tmp_path))
    with pytest.raises(ValueError, match="non-negative weights"):
        AudioEncoderModule(encoder=TINY_TOWER, char_weight=0.0, token_weight=0.0)
    with pytest.raises(ValueError, match="leaves no loss without text_lm or text_tokenizer"):
        AudioEncoderModule(encoder=TINY_TOWER, char_weight=0.0)


def test_the_group_labels_follow_the_best_path_through_the_transcript():
    from funaudiochat.training.llm.audio_encoder import ctc_group_labels

    # 5 groups, classes 0 (blank), 1, 2: the frames favour 1 1 blank 2 2, the transcript is [1, 2]
    favoured = torch.tensor([1, 1, 0, 2, 2])
    log_probs = torch.full((2, 5, 3), -5.0)
    log_probs[0, torch.arange(5), favoured] = -0.1
    log_probs[1] = log_probs[0]
    targets = torch.tensor([[1, 2], [2, 2]])
    labels = ctc_group_labels(log_probs, torch.tensor([5, 2]), targets, torch.tensor([2, 2]))
    assert labels[0].tolist() == [1, 1, 0, 2, 2]
    assert labels[1] is None  # [2, 2] needs a blank between: 3 groups, only 2 valid


def test_the_embedding_match_is_zero_on_target_and_relative_otherwise():
    from funaudiochat.training.llm.audio_encoder import embedding_match_loss

    embeddings = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    labels = [torch.tensor([1, 0, 2]), None]
    on_target = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]], [[9.0, 9.0]] * 3])
    assert float(embedding_match_loss(on_target, labels, embeddings)) == 0.0
    off = on_target.clone()
    off[0, 1] = torch.tensor([0.0, 1.0])  # the blank group should be 0: error 1 over target norms 1 + 4
    assert float(embedding_match_loss(off, labels, embeddings)) == pytest.approx(0.2)
    assert embedding_match_loss(on_target, [None, None], embeddings) is None


def test_the_embedding_match_pulls_the_groups_onto_the_embeddings(
    said, text_lm, tmp_path, recorder, quiet_trainer
):
    torch.manual_seed(0)
    start = tmp_path / "start.safetensors"
    first_tower = AudioEncoderModule(encoder={**TINY_TOWER, "output_dim": 64})
    first_tower.export(start)
    data, module = token_ctc_fit(
        said, text_lm, embed_weight=1.0, token_logit_scale=10.0, init_weights=str(start)
    )
    for name, tensor in first_tower.encoder.state_dict().items():
        assert torch.equal(module.encoder.state_dict()[name], tensor), name
    assert float(module.token_head.log_scale.detach().exp()) == pytest.approx(10.0)
    losses = recorder("train/embed_loss")
    L.Trainer(max_steps=40, callbacks=[losses], **quiet_trainer).fit(module, datamodule=data)
    first, last = losses.values["train/embed_loss"][0], losses.values["train/embed_loss"][-1]
    assert last < 0.5 * first, (first, last)

    wide = AudioEncoderModule(encoder={**TINY_TOWER, "d_model": 48, "output_dim": 64})
    wide.export(tmp_path / "wide.safetensors")
    with pytest.raises(ValueError, match="init_weights .*wide.safetensors.*shape"):
        token_ctc_fit(said, text_lm, init_weights=str(tmp_path / "wide.safetensors"))


def test_bad_embedding_match_settings_are_refused(text_lm):
    with pytest.raises(ValueError, match="embed_weight must be >= 0 and, when > 0, needs text_lm"):
        AudioEncoderModule(encoder=TINY_TOWER, embed_weight=1.0)
    tower = {**TINY_TOWER, "output_dim": 64}
    with pytest.raises(ValueError, match="embed_weight must be >= 0"):
        AudioEncoderModule(encoder=tower, text_lm=str(text_lm), embed_weight=-1.0)
    with pytest.raises(ValueError, match="logit_scale must be > 0"):
        AudioEncoderModule(encoder=tower, text_lm=str(text_lm), token_logit_scale=0)
