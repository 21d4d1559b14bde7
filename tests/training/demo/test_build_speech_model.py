"""The demo recipe's later stages on the tiny build (``conftest.py``): the towers, pre-alignment, the
finishing stages and the package, saved products, and the recipe at group size 1."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from funaudiochat.training.demo.build import STAGES, DemoBuild, DemoSettings


def test_audio_encoder_stage_trains_the_tower_the_speech_model_starts_from(with_audio_encoder):
    import torch
    from funaudiochat.base.weights import read_safetensors
    from funaudiochat.training.demo.model_stages import demo_model_spec
    from funaudiochat.training.llm.module import build_model

    root = with_audio_encoder
    record = json.loads((root / "audio_encoder" / "stage.json").read_text())
    assert record["steps"] == 2 and record["utterances"] > record["spliced"] == 3
    # the spliced sentences are spoken and in the tower's manifest, as are the training questions in the
    # recipe's more voices (``listening_voices``)
    utterances = [json.loads(line) for line in (root / "audio_encoder" / "utterances.jsonl").open()]
    assert len(utterances) == record["utterances"]
    assert all(Path(u["audio"]).is_file() for u in utterances)
    assert sum("spliced_" in u["audio"] for u in utterances) == 3
    assert any("/voices/" in u["audio"] for u in utterances) == (DemoSettings().listening_voices > 0)
    config = yaml.safe_load((root / "audio_encoder" / "run" / "config.yaml").read_text())
    assert (
        config["trainer"]["precision"]
        == record["settings"]["tower_precision"]
        == DemoSettings().tower_precision
    )
    assert config["data"]["cache_audio"] is True
    weights, _ = read_safetensors(record["weights"])
    spec = demo_model_spec(root / "text_lm" / "model", root / "text_tokenizer", 0, record["weights"])
    tower = build_model(spec).continuous_audio_tower.state_dict()
    assert set(weights) == set(tower)
    for name, tensor in weights.items():
        assert torch.equal(tower[name], tensor), name
    # without it the tower is the random one
    fresh = build_model(demo_model_spec(root / "text_lm" / "model", root / "text_tokenizer", 0))
    assert not torch.equal(fresh.continuous_audio_tower.proj.weight, weights["proj.weight"])


def test_tower_match_stage_fine_tunes_the_tower_the_speech_model_starts_from(
    with_audio_encoder, tmp_path, tiny
):
    import shutil

    import torch
    from funaudiochat.base.weights import read_safetensors

    root = with_audio_encoder
    record = json.loads((root / "tower_match" / "stage.json").read_text())
    assert record["steps"] == 2
    matched, metadata = read_safetensors(root / "tower_match" / "audio_encoder.safetensors")
    before, _ = read_safetensors(root / "audio_encoder" / "audio_encoder.safetensors")
    assert metadata["grouped_output"] == "llm_input_embeddings" and set(matched) == set(before)
    assert any(not torch.equal(matched[name], tensor) for name, tensor in before.items())
    hparams = next((root / "tower_match" / "run").rglob("hparams.yaml")).read_text()
    assert "embed_weight: 1.0" in hparams and "token_logit_scale: 20.0" in hparams
    # with no steps the tower is passed on as it is
    copy = tmp_path / "copy"
    for stage in ("audio_encoder", "text_lm"):
        shutil.copytree(root / stage, copy / stage)
    DemoBuild(copy, DemoSettings(**{**tiny, "tower_match_steps": 0}), log=lambda _: None).run(["tower_match"])
    passed, _ = read_safetensors(copy / "tower_match" / "audio_encoder.safetensors")
    assert all(torch.equal(passed[name], tensor) for name, tensor in before.items())


def test_with_a_token_table_of_its_own_the_tower_trains_without_the_text_llm(
    with_audio_encoder, tmp_path, tiny
):
    from funaudiochat.base.weights import read_safetensors

    root = with_audio_encoder
    settings = DemoSettings(**{**tiny, "tower_token_table": "learnt"})
    copy = tmp_path / "copy"
    for stage in ("corpus", "speech", "text_tokenizer"):  # no text_lm
        shutil.copytree(root / stage, copy / stage, symlinks=True)
    build = DemoBuild(copy, settings, log=lambda _: None)
    assert "text_lm" not in build.needs("audio_encoder") and "text_tokenizer" in build.needs("audio_encoder")
    assert "text_lm" in DemoBuild(copy, DemoSettings(**tiny)).needs("audio_encoder")
    build.run(["audio_encoder"])
    _, metadata = read_safetensors(copy / "audio_encoder" / "audio_encoder.safetensors")
    assert "grouped_output" not in metadata  # its groups are not in the LLM's space yet
    hparams = next((copy / "audio_encoder" / "run").rglob("hparams.yaml")).read_text()
    assert f"text_tokenizer: {copy / 'text_tokenizer'}" in hparams and "text_lm: null" in hparams
    shutil.copytree(root / "text_lm", copy / "text_lm")
    build.run(["tower_match"])  # the embedding match puts them there
    _, metadata = read_safetensors(copy / "tower_match" / "audio_encoder.safetensors")
    assert metadata["grouped_output"] == "llm_input_embeddings"
    with pytest.raises(ValueError, match="tower_token_table='learnt' needs tower_match_steps > 0"):
        DemoSettings(tower_token_table="learnt", tower_match_steps=0)
    with pytest.raises(ValueError, match="tower_token_table must be one of"):
        DemoSettings(tower_token_table="llm")


def test_the_towers_width_is_a_setting_the_model_and_the_tower_agree_on(with_text_lm):
    from funaudiochat.training.demo.model_stages import audio_encoder_shape, demo_audio, demo_model_spec
    from funaudiochat.training.demo.text_stages import text_lm_width
    from funaudiochat.training.llm.module import build_model

    text_lm = with_text_lm / "text_lm" / "model"
    # the LLM's width is known before it trains (the tower may train beside it): the trained one's
    trained_width = json.loads((text_lm / "config.json").read_text())["hidden_size"]
    assert text_lm_width("tiny") == trained_width == 64 and text_lm_width("demo") == 256
    shape = audio_encoder_shape(text_lm_width("tiny"), 32)
    assert (shape["d_model"], shape["encoder_ffn_dim"], shape["output_dim"]) == (32, 128, 64)
    spec = demo_model_spec(text_lm, with_text_lm / "text_tokenizer", 0, audio_width=32)
    model = build_model(spec)
    assert model.config.audio_config.d_model == 32 and model.config.audio_config.encoder_ffn_dim == 128
    assert audio_encoder_shape(64)["d_model"] == 128 and DemoSettings().audio_encoder_width == 256
    with pytest.raises(ValueError, match="audio_encoder_width must be"):
        demo_audio(30)


def test_the_heads_size_is_a_setting_the_pre_aligned_model_is_built_at(with_text_lm):
    from funaudiochat.training.demo.head_shape import DEMO_SRH, demo_srh
    from funaudiochat.training.demo.model_stages import demo_model_spec
    from funaudiochat.training.llm.module import build_model

    assert demo_srh() == DEMO_SRH and DEMO_SRH["hidden_size"] == 128  # the head of the builds before
    assert (DemoSettings().srh_width, DemoSettings().srh_layers) == (256, 4)  # the recipe's since
    text_lm = with_text_lm / "text_lm" / "model"
    spec = demo_model_spec(text_lm, with_text_lm / "text_tokenizer", 0, srh_width=64, srh_layers=1)
    head = build_model(spec).audio_invert_tower.crq_transformer.config
    assert (head.hidden_size, head.num_hidden_layers, head.intermediate_size) == (64, 1, 192)
    assert (head.num_attention_heads, head.num_key_value_heads, head.head_dim) == (2, 1, 32)


def test_pre_alignment_stage_starts_from_the_text_llm_and_exports(with_audio_encoder, tiny):
    import torch
    from funaudiochat.drsr import FunAudioChatForConditionalGeneration
    from transformers import AutoModelForCausalLM

    root = with_audio_encoder
    DemoBuild(root, DemoSettings(**tiny), log=lambda _: None).run(["pre_alignment"])
    record = json.loads((root / "pre_alignment" / "stage.json").read_text())
    model = FunAudioChatForConditionalGeneration.from_pretrained(record["model"])
    text_lm = AutoModelForCausalLM.from_pretrained(root / "text_lm_copy" / "model")
    # the LLM was frozen: it is still the text LLM it started from, weight for weight
    for name, tensor in text_lm.state_dict().items():
        assert torch.equal(model.language_model.state_dict()[name], tensor), name
    assert model.config.audio_config.output_dim == text_lm.config.hidden_size
    # it trains on the spoken replies only (with the LLM and the listening path frozen nothing else learns)
    spoken = (root / "pre_alignment" / "spoken_replies.jsonl").read_text().splitlines()
    every = (root / "conversations" / "train.jsonl").read_text().splitlines()
    assert record["spoken_replies"] == len(spoken) and 0 < len(spoken) < len(every)
    assert all("[AU" in json.loads(line)["audio"][-1] for line in spoken)
    # before them the listening path learnt on the spoken questions answered in text, the LLM frozen
    from funaudiochat.base.weights import read_safetensors
    from funaudiochat.drsr.prompts import DEFAULT_S2T_PROMPT

    listening = (root / "pre_alignment" / "listening_rows.jsonl").read_text().splitlines()
    assert record["listening"]["rows"] == len(listening) > 0
    for line in map(json.loads, listening):
        assert line["system"] == DEFAULT_S2T_PROMPT and len(line["audio"]) == 1
    encoder, _ = read_safetensors(root / "tower_match" / "audio_encoder.safetensors")
    tower = model.continuous_audio_tower.state_dict()
    assert any(not torch.equal(tower[name], tensor) for name, tensor in encoder.items())
    # the demo recipe's models decode with the prompt's previous speech tokens as trained
    assert model.config.audio_config.srh_prompt_token == "pad"


def test_finishing_stages_fine_tune_train_the_vocoder_and_package_a_pipeline(packaged):
    from funaudiochat.chat import Pipeline

    root = packaged
    cocktail = json.loads((root / "core_cocktail" / "stage.json").read_text())
    assert cocktail["text_pairs"] == 4
    dpo = json.loads((root / "dpo" / "stage.json").read_text())
    # spoken replies take the three kinds in turn; a text reply with no other reply to borrow is skipped
    spoken = sum(dpo["pairs"].get(kind, 0) for kind in ("wrong", "truncated", "garbled"))
    assert spoken >= 1 and 3 <= sum(dpo["pairs"].values()) <= 6
    assert dpo["pairs"].get("wrong", 0) >= dpo["pairs"].get("truncated", 0) >= dpo["pairs"].get("garbled", 0)
    rows = [json.loads(line) for line in (root / "dpo" / "preferences.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["chosen"]["messages"][:-1] == row["rejected"]["messages"][:-1]
        assert row["chosen"] != row["rejected"]
    assert (root / "vocoder_hift" / "hift.safetensors").is_file()
    assert (root / "vocoder_flow" / "flow.safetensors").is_file()
    package = json.loads((root / "package" / "stage.json").read_text())
    assert 0 < package["bytes"] <= 40 * 2**20
    card = (root / "package" / "README.md").read_text()
    assert "| `dpo` |" in card and "| total |" in card and "Fun-Audio-Chat demo model" in card
    assert "| critical path (" in card and "pre_alignment -> core_cocktail -> dpo -> package" in card
    assert "spoken replies are planned (`plan_speech`" in card
    pipe = Pipeline.from_pretrained(root / "package")
    assert pipe.vocoder.speakers.names == ["assistant"] and pipe.speech_tokenizer is not None
    assert pipe.vocoder.flow.config.n_timesteps == DemoSettings().flow_inference_steps == 5
    assert pipe.plan_speech is DemoSettings().plan_speech is True  # generation_config.json's
    assert DemoSettings().speech_timing and pipe.speech_timing is not None  # speech_timing.json
    assert pipe.speech_timing.advance and pipe.speech_timing.first_slot >= 1
    reply = pipe.chat(text="What is two plus three?", mode="s2s")
    assert reply.audio is not None and reply.audio.ndim == 1
    assert sum(t == pipe.model.config.text_config.sil_index for t in reply.text_ids) > 0


def test_saved_products_let_a_new_run_skip_training_where_the_settings_agree(packaged, tmp_path, tiny_finish):
    from funaudiochat.training.demo.products import restore_products, save_products

    saved = tmp_path / "saved"
    names = save_products(DemoBuild(packaged, DemoSettings(**tiny_finish)), saved)
    assert names == list(STAGES)
    assert (saved / "text_lm" / "model" / "config.json").is_file()
    assert (saved / "vocoder_flow" / "flow.safetensors").is_file()
    # products and records only: no data, no checkpoints
    assert not (saved / "text_lm" / "run").exists()
    assert [path.name for path in (saved / "speech").iterdir()] == ["stage.json"]
    text_lm = json.loads((saved / "text_lm" / "stage.json").read_text())
    assert {"text_lm_steps", "seed"} <= set(text_lm["settings_read"])
    assert "cocktail_alpha" not in text_lm["settings_read"]

    # the fixtures spoke 2 pairs per file and scored the text LLM on 3: a run at 3 keeps the text LLM
    # and its tokenizer, and trains again everything that rests on the speech
    root = tmp_path / "new"
    build = DemoBuild(root, DemoSettings(**tiny_finish), log=lambda _: None)
    outcome = restore_products(build, saved)
    assert outcome["text_tokenizer"] == outcome["text_lm"] == "restored"
    assert outcome["speech_tokenizer"] == "not restored: the settings differ in ['pairs_per_file']"
    assert outcome["dpo"].startswith("not restored")
    build.run(["corpus", "text_tokenizer", "text_lm"])
    assert not (root / "text_lm" / "run").exists()  # not trained again
    for name in ("model.safetensors", "config.json"):
        new, old = root / "text_lm" / "model" / name, packaged / "text_lm" / "model" / name
        assert new.read_bytes() == old.read_bytes()
    record = json.loads((root / "text_lm" / "stage.json").read_text())
    assert record["restored"]["trained_seconds"] == text_lm["seconds"]
    assert restore_products(build, saved)["text_lm"] == "done already"
    # the model card gives a restored stage the seconds it took to train, not the copy's
    from funaudiochat.training.demo.package_stage import stage_seconds, total_row

    trained = f"{text_lm['seconds']:.0f} (trained in an earlier run, restored)"
    assert stage_seconds(build, "text_lm", 0.2) == trained
    assert stage_seconds(build, "corpus", 0.2) == "0"
    assert total_row(build, {"text_lm": 0.2, "corpus": 0.2}) == (
        f"| total | {text_lm['seconds'] + 0.2:.0f} ({(text_lm['seconds'] + 0.2) / 3600:.2f} h) |\n"
    )
    # forced, a restored stage trains after all
    build.run(["text_lm"], force=True)
    assert (root / "text_lm" / "run").exists()


def test_speech_polish_fits_the_speech_output_again_after_dpo_and_is_what_the_package_holds(
    packaged, tmp_path, tiny_finish
):
    import shutil

    import torch
    from funaudiochat.training.demo.finetune_stages import final_model
    from safetensors.torch import load_file

    assert final_model(packaged / "dpo") == packaged / "dpo" / "run" / "model"  # not polished
    root = tmp_path / "run"
    shutil.copytree(packaged, root, symlinks=True, ignore=shutil.ignore_patterns("dpo", "package"))
    settings = DemoSettings(**{**tiny_finish, "speech_polish_steps": 1, "speech_polish_lr": 1.0})
    DemoBuild(root, settings, log=lambda _: None).run(["dpo", "package"])
    record = json.loads((root / "dpo" / "stage.json").read_text())
    polished = root / "dpo" / "polish" / "model"
    assert final_model(root / "dpo") == polished
    assert record["speech_polish_steps"] == 1 and record["model"] == str(polished)
    before = load_file(root / "dpo" / "run" / "model" / "model.safetensors")
    after = load_file(polished / "model.safetensors")
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    # the speech output learnt (the head, the speech table tied to it); the LLM and the listening path did not
    assert changed and all(name.startswith(("audio_invert_tower.", "audio_tower.")) for name in changed)
    shipped = load_file(root / "package" / "model.safetensors")  # half precision
    assert shipped.keys() == after.keys()
    assert all(torch.equal(shipped[name], after[name].to(shipped[name].dtype)) for name in after)
    assert any(not torch.equal(shipped[name], before[name].to(shipped[name].dtype)) for name in changed)


def test_the_recipe_at_group_size_one_trains_again_what_rests_on_the_grouping(
    packaged, tmp_path, tiny_finish
):
    """``tools/experiments/frame_rate.py``'s 25 Hz arm: a run restored from a 5 Hz run (its folder holds
    the products where ``--save-products`` puts them) at ``group_size=1`` keeps the text LLM, the speech
    tokenizer and the vocoder where their settings agree, and trains the towers, the speech stages and the
    package at 25 Hz slots."""
    from funaudiochat.base.weights import read_safetensors
    from funaudiochat.chat import Pipeline
    from funaudiochat.drsr.text_tokenizer import SIL_TOKEN
    from funaudiochat.training.data import read_sharegpt
    from funaudiochat.training.demo.products import restore_products

    root = tmp_path / "k1"
    build = DemoBuild(root, DemoSettings(**tiny_finish, group_size=1), log=lambda _: None)
    outcome = restore_products(build, packaged)
    # (the fixtures spoke 2 pairs per file and scored the text LLM on 3: the speech trains again too)
    assert outcome["text_lm"] == outcome["text_lm_copy"] == "restored"
    for name in ("audio_encoder", "tower_match", "pre_alignment", "core_cocktail", "dpo"):
        assert "group_size" in outcome[name], outcome[name]
    build.run()
    _, metadata = read_safetensors(root / "tower_match" / "audio_encoder.safetensors")
    assert metadata["group_size"] == "1"
    # a spoken reply's first word sits after the 10 BOS slots (slot 9 predicts the first codes), not 2
    conversations = read_sharegpt(root / "conversations" / "train.jsonl")
    replies = [speech.text for c in conversations for speech in c.assistant_speech]
    assert replies and all(text.startswith(SIL_TOKEN * 9) for text in replies)
    pipe = Pipeline.from_pretrained(root / "package")
    assert pipe.model.config.audio_config.group_size == pipe.processor.group_size == 1
    assert "25 Hz input and output (group size 1)" in (root / "package" / "README.md").read_text()
    reply = pipe.chat(text="What is two plus three?", mode="s2s")
    assert reply.audio is not None and reply.audio.ndim == 1
    assert json.loads((root / "dpo" / "stage.json").read_text())["process_peak_rss_mb"] > 0
