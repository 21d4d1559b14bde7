"""The demo recipe's stages run in order, resume where they stopped, and refuse to run without inputs."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from funaudiochat.drsr.processing import FunAudioChatProcessor
from funaudiochat.drsr.prompts import format_tool_call
from funaudiochat.training.demo.build import STAGES, DemoBuild, DemoSettings, main
from funaudiochat.training.demo.context import default_precision


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    lines = []
    took = DemoBuild(root, DemoSettings(text_vocab_size=400), log=lines.append).run(
        ["corpus", "text_tokenizer"]
    )
    return root, took, lines


def test_stages_write_their_folders_and_timings(built):
    root, took, _ = built
    assert list(took) == ["corpus", "text_tokenizer"]
    timings = json.loads((root / "timings.json").read_text())
    assert set(timings) == {"corpus", "text_tokenizer"}
    record = json.loads((root / "text_tokenizer" / "stage.json").read_text())
    assert record["settings"]["text_vocab_size"] == 400 and record["seconds"] >= 0
    processor = FunAudioChatProcessor.from_pretrained(root / "text_tokenizer")
    tokenizer = processor.tokenizer
    # the texts the model handles come out in few tokens: the BPE learned them
    assert len(tokenizer("What is seven plus three?", add_special_tokens=False)["input_ids"]) <= 8
    call = format_tool_call("set_timer", {"minutes": 5})
    assert tokenizer.decode(tokenizer(call, add_special_tokens=False)["input_ids"]) == call


def test_finished_stages_are_skipped_and_forced_ones_redone(built):
    root, _, _ = built
    lines = []
    build = DemoBuild(root, DemoSettings(text_vocab_size=400), log=lines.append)
    assert build.run(["corpus"]) == {}
    assert "done already" in lines[0]
    assert list(build.run(["corpus"], force=True)) == ["corpus"]


def test_a_stage_without_its_inputs_says_what_to_run(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"needs stage 'corpus'.*--stage corpus"):
        DemoBuild(tmp_path, log=lambda _: None).run(["text_tokenizer"])
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path), "--stage", "text_tokenizer"])
    assert exit_info.value.code == 2 and "needs stage 'corpus'" in capsys.readouterr().err
    with pytest.raises(ValueError, match=f"unknown stage.*{list(STAGES)}"):
        DemoBuild(tmp_path).run(["nope"])


@pytest.fixture(scope="module")
def spoken(built):
    root, _, _ = built
    settings = DemoSettings(text_vocab_size=400, pairs_per_file=2, tokenizer_steps=2)
    DemoBuild(root, settings, log=lambda _: None).run(
        ["speech", "practice_speech", "speech_tokenizer", "conversations"]
    )
    return root


def test_speech_stage_speaks_train_and_heldout_pairs_in_their_voices(spoken):
    from funaudiochat.training.data import read_manifest
    from funaudiochat.training.demo.build import ASSISTANT_VOICE, EVAL_VOICES, TRAIN_VOICES

    root = spoken
    record = json.loads((root / "speech" / "stage.json").read_text())
    assert record["train_a"]["pairs"] == 4 and record["heldout"]["pairs"] == 8
    for group, voices in (("train_a", TRAIN_VOICES), ("train_b", TRAIN_VOICES), ("heldout", EVAL_VOICES)):
        folder = root / "speech" / group
        assert len(read_manifest(folder / "manifest.jsonl")) == record[group]["pairs"]
        spoken = [json.loads(line) for line in (folder / "voices.jsonl").read_text().splitlines()]
        assert len(spoken) == record[group]["pairs"]
        for line in spoken:
            assert line["question"][0] in voices and line["answer"][0] == ASSISTANT_VOICE
            assert line["snr_db"] == (20.0 if group == "train_b" else None)
    assert not set(TRAIN_VOICES) & set(EVAL_VOICES)


def test_speech_tokenizer_stage_trains_and_recodes_every_answer(spoken):
    from funaudiochat.tokenizer import SpeechTokenizer, load_audio
    from funaudiochat.training.data import read_manifest, read_sharegpt

    folder = spoken / "speech_tokenizer"
    record = json.loads((folder / "stage.json").read_text())
    assert record["utterances"] == 2 * 2 * 4 and record["recoded"] == {
        "train_a": 4,
        "train_b": 4,
        "heldout": 8,
    }
    tokenizer = SpeechTokenizer.from_safetensors(folder / "speech_tokenizer.safetensors").eval()
    entries = read_manifest(folder / "data" / "heldout" / "manifest.jsonl")
    want = tokenizer.encode([load_audio(entries[0].answer_audio)])[0]
    assert (
        entries[0].answer_codes.tolist() == want.tolist()
    )  # the trained tokenizer's codes, not the random one's
    assert len(read_sharegpt(folder / "data" / "heldout" / "train.jsonl")) == 8


TINY = dict(
    text_vocab_size=400,
    pairs_per_file=3,
    tokenizer_steps=2,
    text_lm_steps=4,
    text_lm_size="tiny",
    text_lm_copy_steps=2,
    text_lm_copies=20,
    audio_encoder_steps=2,
    audio_encoder_spliced=3,
    audio_encoder_width=128,
    srh_width=128,
    srh_layers=3,
    tower_match_steps=2,
    listening_steps=2,
    pre_alignment_steps=2,
    compile_llm=False,  # compiling costs a minute a fit; the compiled fit is tested in test_text_lm.py
)


@pytest.fixture(scope="module")
def with_text_lm(built):
    root, _, _ = built
    DemoBuild(root, DemoSettings(**TINY), log=lambda _: None).run(["text_lm"])
    return root


def test_text_lm_stage_trains_exports_and_scores_the_heldout_pairs(with_text_lm):
    from transformers import AutoModelForCausalLM

    root = with_text_lm
    record = json.loads((root / "text_lm" / "stage.json").read_text())
    assert record["train_pairs"] > 1000 and record["heldout"]["pairs"] == 3
    assert 0.0 <= record["heldout"]["accuracy"] <= 1.0
    lines = (root / "text_lm" / "pairs.jsonl").read_text().splitlines()
    assert len(lines) == record["train_pairs"] and "question" in json.loads(lines[0])
    # it knows every content (held-out contents included) and never sees a held-out phrasing
    learned = [json.loads(line) for line in lines]
    questions, contents = {r["question"] for r in learned}, {r["content"] for r in learned}
    corpus = [json.loads(line) for line in (root / "corpus" / "corpus.jsonl").read_text().splitlines()]
    qa = [r for r in corpus if r["task"] not in ("tool", "asr")]
    assert all(r["content"] in contents for r in qa)
    assert not any(r["question"] in questions for r in qa if r["split"] == "heldout_phrasing")
    assert AutoModelForCausalLM.from_pretrained(root / "text_lm" / "model").config.hidden_size == 64
    # trained at the language-model stages' precision, exported in float32
    config = yaml.safe_load((root / "text_lm" / "run" / "config.yaml").read_text())
    assert config["trainer"]["precision"] == record["settings"]["llm_precision"] == default_precision()
    from safetensors import safe_open

    with safe_open(root / "text_lm" / "model" / "model.safetensors", "pt") as weights:
        assert {weights.get_slice(name).get_dtype() for name in weights.keys()} == {"F32"}


def test_text_lm_stage_with_skills_learns_tool_calls_and_copying_from_the_start(with_text_lm, tmp_path):
    import shutil

    from funaudiochat.drsr.prompts import ASR_INSTRUCTION

    for stage in ("corpus", "text_tokenizer"):
        shutil.copytree(with_text_lm / stage, tmp_path / stage)
    settings = DemoSettings(**TINY, text_lm_skills=True, text_lm_copies_from_start=True, text_lm_buckets=3)
    DemoBuild(tmp_path, settings, log=lambda _: None).run(["text_lm"])
    learned = [json.loads(line) for line in (tmp_path / "text_lm" / "pairs.jsonl").read_text().splitlines()]
    calls = [r for r in learned if r["task"] == "tool"]
    assert calls and all(r["answer"].startswith("<tool_call>") and "# Tools" in r["system"] for r in calls)
    assert any(r["task"] == "asr" and r["question"].endswith(ASR_INSTRUCTION) for r in learned)
    copies = [r for r in learned if r["task"] == "copy"]  # text_lm_copies, from the first step
    assert len(copies) == 20 and all(r["question"] == f"{r['answer']} {ASR_INSTRUCTION}" for r in copies)
    record = json.loads((tmp_path / "text_lm" / "stage.json").read_text())
    assert record["settings"]["text_lm_skills"] is True and record["train_pairs"] == len(learned)
    assert {"text_lm_copies_from_start", "text_lm_buckets"} <= set(record["settings_read"])
    assert "num_buckets: 3" in (tmp_path / "text_lm" / "run" / "config.yaml").read_text()
    assert (tmp_path / "text_lm" / "model" / "config.json").is_file()


def test_text_lm_copy_stage_continues_the_llm_with_copy_pairs_its_embeddings_frozen(with_text_lm, tmp_path):
    import shutil

    import torch
    from funaudiochat.base.weights import read_safetensors
    from funaudiochat.drsr.prompts import ASR_INSTRUCTION

    for stage in ("corpus", "text_tokenizer", "text_lm"):
        shutil.copytree(with_text_lm / stage, tmp_path / stage)
    from funaudiochat.training.demo.text_stages import text_lm_pairs

    settings = DemoSettings(**{**TINY, "text_lm_copy_steps": 3, "text_lm_copy_tools": 2})
    DemoBuild(tmp_path, settings, log=lambda _: None).run(["text_lm_copy"])
    learned = [
        json.loads(line) for line in (tmp_path / "text_lm_copy" / "pairs.jsonl").read_text().splitlines()
    ]
    copies = [r for r in learned if r["task"] == "copy"]
    assert len(copies) == 20 and all(r["question"] == f"{r['answer']} {ASR_INSTRUCTION}" for r in copies)
    assert len(learned) > 1000  # the text LLM's own pairs too, so it keeps what it knows
    tools = json.loads((tmp_path / "corpus" / "tools.json").read_text())
    args = (settings.seed, settings.knowledge_per_content, tools, True, 20)
    with_tools = text_lm_pairs(*args, tool_repeats=2, practice=settings.text_lm_copy_practice)
    assert (
        len(learned) == len(with_tools) > len(text_lm_pairs(*args, practice=settings.text_lm_copy_practice))
    )
    assert len(with_tools) > len(text_lm_pairs(*args, tool_repeats=2)) and settings.text_lm_copy_practice
    record = json.loads((tmp_path / "text_lm_copy" / "stage.json").read_text())
    assert {"text_lm_copy_tools", "text_lm_copy_practice"} <= set(record["settings_read"])
    assert (
        record["steps"] == 3 and 0.0 <= record["copied"]["accuracy"] <= 1.0 and record["copied"]["sentences"]
    )
    before, _ = read_safetensors(tmp_path / "text_lm" / "model" / "model.safetensors")
    after, _ = read_safetensors(tmp_path / "text_lm_copy" / "model" / "model.safetensors")
    assert torch.equal(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])
    assert not torch.equal(after["lm_head.weight"], before["lm_head.weight"])
    # 0 steps: the text LLM as it is
    shutil.rmtree(tmp_path / "text_lm_copy")
    DemoBuild(tmp_path, DemoSettings(**{**TINY, "text_lm_copy_steps": 0}), log=lambda _: None).run(
        ["text_lm_copy"]
    )
    copied, _ = read_safetensors(tmp_path / "text_lm_copy" / "model" / "model.safetensors")
    assert all(torch.equal(copied[name], tensor) for name, tensor in before.items())


def test_conversations_stage_lays_out_each_task_as_the_pipeline_prompts_it(spoken):
    from funaudiochat.drsr.prompts import ASR_INSTRUCTION, DEFAULT_S2M_PROMPT, DEFAULT_S2T_PROMPT
    from funaudiochat.training.data import AssistantSpeech, read_sharegpt
    from funaudiochat.training.data.records import AUDIO_TEMPLATE

    folder = spoken / "conversations"
    record = json.loads((folder / "stage.json").read_text())["conversations"]
    # two of each corpus file: pairs (QA and asr tasks mixed, by id order) and tools; the QA pairs of the
    # clean rendition once more as S2T, those of the noisy one transcribed
    spoken = {task: n for task, n in record["train"].items() if not task.endswith(("_s2t", "_asr"))}
    qa = sum(n for task, n in spoken.items() if task not in ("asr", "tool"))
    assert sum(spoken.values()) == 8 and spoken.get("tool") == 4
    assert sum(n for task, n in record["train"].items() if task.endswith("_s2t")) == qa // 2
    assert sum(n for task, n in record["train"].items() if task.endswith("_asr")) == qa // 2
    assert sum(record["heldout"].values()) == 8
    for conv in read_sharegpt(folder / "train.jsonl") + read_sharegpt(folder / "heldout.jsonl"):
        speaks = any(isinstance(audio, AssistantSpeech) for audio in conv.audios)
        if conv.system == DEFAULT_S2M_PROMPT:
            assert speaks
        elif conv.system == DEFAULT_S2T_PROMPT:
            asks = conv.turns[0].content
            assert not speaks and (asks.endswith(ASR_INSTRUCTION) or asks == AUDIO_TEMPLATE)
        else:
            assert "<tools>" in conv.system and "<tool_call>" in conv.turns[1].content and not speaks


def test_spoken_practice_questions_are_answered_in_text_in_the_training_conversations(spoken, tmp_path):
    import soundfile
    from funaudiochat.drsr.prompts import DEFAULT_S2T_PROMPT
    from funaudiochat.training.data import read_sharegpt
    from funaudiochat.training.data.records import AUDIO_TEMPLATE
    from funaudiochat.training.demo.corpus import build_corpus

    assert json.loads((spoken / "practice_speech" / "stage.json").read_text())["questions"] == 0  # default
    root = tmp_path / "demo"
    for stage in ("corpus", "text_tokenizer", "speech", "speech_tokenizer"):
        (root / stage).parent.mkdir(parents=True, exist_ok=True)
        (root / stage).symlink_to(spoken / stage)
    settings = DemoSettings(text_vocab_size=400, pairs_per_file=2, spoken_practice=3)
    DemoBuild(root, settings, log=lambda _: None).run(["practice_speech", "conversations"])
    practice = [
        json.loads(line) for line in (root / "practice_speech" / "practice.jsonl").read_text().splitlines()
    ]
    assert len(practice) == 3
    corpus_questions = {pair.question for pair in build_corpus(0)}
    for record in practice:
        assert record["question"] not in corpus_questions  # a wording the corpus never asks
        assert soundfile.info(record["audio"]).duration > 0.3
    record = json.loads((root / "conversations" / "stage.json").read_text())["conversations"]["train"]
    assert record["practice_s2t"] == 3
    asked = {r["question"] for r in practice}
    rows = [c for c in read_sharegpt(root / "conversations" / "train.jsonl") if c.audios[0].ref_text in asked]
    assert [(c.turns[1].content, c.audios[0].ref_text) for c in rows] == [
        (r["answer"], r["question"]) for r in practice
    ]
    assert all(c.system == DEFAULT_S2T_PROMPT and c.turns[0].content == AUDIO_TEMPLATE for c in rows)
    # forced with another count: those questions are spoken, not the audio of the last run
    settings = DemoSettings(text_vocab_size=400, pairs_per_file=2, spoken_practice=2)
    DemoBuild(root, settings, log=lambda _: None).run(["practice_speech"], force=True)
    again = [
        json.loads(line) for line in (root / "practice_speech" / "practice.jsonl").read_text().splitlines()
    ]
    assert [r["question"] for r in again] == [r["question"] for r in practice[:2]] and len(again) == 2
    assert len(list((root / "practice_speech" / "audio").glob("*.wav"))) == 2
    # in more voices: the same questions spoken again, each voice a training one or one of the more
    from funaudiochat.training.demo.speech_stages import (
        ASSISTANT_VOICE,
        EVAL_VOICES,
        PRACTICE_VOICES,
        TRAIN_VOICES,
    )

    for more, outcome in (
        (len(PRACTICE_VOICES), None),
        (len(PRACTICE_VOICES) + 1, "must be 0 to 10, got 11"),
    ):
        settings = DemoSettings(
            text_vocab_size=400, pairs_per_file=2, spoken_practice=40, spoken_practice_voices=more
        )
        build = DemoBuild(root, settings, log=lambda _: None)
        if outcome:
            with pytest.raises(ValueError, match=f"spoken_practice_voices {outcome}"):
                build.run(["practice_speech"], force=True)
            continue
        build.run(["practice_speech"], force=True)
    manifest = (root / "practice_speech" / "audio" / "manifest.jsonl").read_text().splitlines()
    voices = {json.loads(line)["voice"] for line in manifest}
    assert voices <= set(TRAIN_VOICES + PRACTICE_VOICES) and voices & set(PRACTICE_VOICES)
    assert not set(PRACTICE_VOICES) & set(EVAL_VOICES + (ASSISTANT_VOICE,) + TRAIN_VOICES)


def test_training_questions_in_the_heldout_voices_are_a_speech_group_the_evaluation_reads(spoken, tmp_path):
    from funaudiochat.chat.demo_eval import heldout_items
    from funaudiochat.training.demo.speech_stages import EVAL_VOICES, speak_training_in_heldout_voices

    root = tmp_path / "demo"
    (root / "speech_tokenizer" / "data").mkdir(parents=True)
    (root / "corpus").symlink_to(spoken / "corpus")
    folder = speak_training_in_heldout_voices(root, limit=3)
    items = heldout_items(root, None, "train_heldout_voices")
    assert len(items) == 3 and {item.split for item in items} == {"train"}
    voices = [json.loads(line)["question"][0] for line in (folder / "voices.jsonl").read_text().splitlines()]
    assert voices and set(voices) <= set(EVAL_VOICES)
    speak_training_in_heldout_voices(root, limit=5)  # there already: kept
    assert len(heldout_items(root, None, "train_heldout_voices")) == 3


def test_conversations_stage_places_reply_words_at_their_speech_or_as_officially(spoken, tmp_path):
    import shutil

    from funaudiochat.training.data import AssistantSpeech, read_sharegpt
    from funaudiochat.training.demo.reply_alignment import SIL

    assert DemoSettings().reply_alignment == "words"  # the recipe's layout; the fixture's
    record = json.loads((spoken / "conversations" / "stage.json").read_text())["reply_alignment"]
    assert record["kind"] == "words"
    tasks = json.loads((spoken / "conversations" / "stage.json").read_text())["conversations"]["train"]
    answers = sum(n for task, n in tasks.items() if task not in ("asr", "tool") and "_" not in task)
    assert record["train"]["aligned"] + record["train"]["proportional"] == answers > 0  # spoken answers
    root = tmp_path / "demo"
    for stage in ("corpus", "text_tokenizer", "speech", "practice_speech", "speech_tokenizer"):
        (root / stage).parent.mkdir(parents=True, exist_ok=True)
        (root / stage).symlink_to(spoken / stage)
    settings = DemoSettings(text_vocab_size=400, pairs_per_file=2, reply_alignment="official")
    DemoBuild(root, settings, log=lambda _: None).run(["conversations"])
    official = read_sharegpt(root / "conversations" / "train.jsonl")
    said = 0
    for plain, aligned in zip(official, read_sharegpt(spoken / "conversations" / "train.jsonl"), strict=True):
        for a, b in zip(plain.audios, aligned.audios, strict=True):
            if isinstance(a, AssistantSpeech) and a.codes is not None:
                assert SIL not in a.text and SIL in b.text
                assert b.text.replace(SIL, "") == a.text and (b.codes == a.codes).all()
                said += 1
            else:
                assert b == a
    assert said == answers
    shutil.rmtree(root)


@pytest.fixture(scope="module")
def with_audio_encoder(with_text_lm, spoken):
    stages = ["text_lm_copy", "audio_encoder", "tower_match"]
    DemoBuild(with_text_lm, DemoSettings(**TINY), log=lambda _: None).run(stages)
    return with_text_lm


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


def test_tower_match_stage_fine_tunes_the_tower_the_speech_model_starts_from(with_audio_encoder, tmp_path):
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
    DemoBuild(copy, DemoSettings(**{**TINY, "tower_match_steps": 0}), log=lambda _: None).run(["tower_match"])
    passed, _ = read_safetensors(copy / "tower_match" / "audio_encoder.safetensors")
    assert all(torch.equal(passed[name], tensor) for name, tensor in before.items())


def test_with_a_token_table_of_its_own_the_tower_trains_without_the_text_llm(with_audio_encoder, tmp_path):
    from funaudiochat.base.weights import read_safetensors

    root = with_audio_encoder
    settings = DemoSettings(**{**TINY, "tower_token_table": "learnt"})
    copy = tmp_path / "copy"
    for stage in ("corpus", "speech", "text_tokenizer"):  # no text_lm
        shutil.copytree(root / stage, copy / stage, symlinks=True)
    build = DemoBuild(copy, settings, log=lambda _: None)
    assert "text_lm" not in build.needs("audio_encoder") and "text_tokenizer" in build.needs("audio_encoder")
    assert "text_lm" in DemoBuild(copy, DemoSettings(**TINY)).needs("audio_encoder")
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


def test_pre_alignment_stage_starts_from_the_text_llm_and_exports(with_audio_encoder):
    import torch
    from funaudiochat.drsr import FunAudioChatForConditionalGeneration
    from transformers import AutoModelForCausalLM

    root = with_audio_encoder
    DemoBuild(root, DemoSettings(**TINY), log=lambda _: None).run(["pre_alignment"])
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


TINY_FINISH = dict(
    TINY,
    cocktail_stage1_steps=1,
    cocktail_stage2_steps=1,
    cocktail_text_pairs=4,
    dpo_pairs=6,
    dpo_steps=1,
    speech_polish_steps=0,
    hift_steps=1,
    flow_steps=1,
    vocoder_size="tiny",
)


@pytest.fixture(scope="module")
def packaged(with_audio_encoder):
    root = with_audio_encoder
    names = ["pre_alignment", "core_cocktail", "dpo", "vocoder_hift", "vocoder_flow", "package"]
    DemoBuild(root, DemoSettings(**TINY_FINISH), log=lambda _: None).run(names)
    return root


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


def test_saved_products_let_a_new_run_skip_training_where_the_settings_agree(packaged, tmp_path):
    from funaudiochat.training.demo.products import restore_products, save_products

    saved = tmp_path / "saved"
    names = save_products(DemoBuild(packaged, DemoSettings(**TINY_FINISH)), saved)
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
    build = DemoBuild(root, DemoSettings(**TINY_FINISH), log=lambda _: None)
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
    packaged, tmp_path
):
    import shutil

    import torch
    from funaudiochat.training.demo.finetune_stages import final_model
    from safetensors.torch import load_file

    assert final_model(packaged / "dpo") == packaged / "dpo" / "run" / "model"  # not polished
    root = tmp_path / "run"
    shutil.copytree(packaged, root, symlinks=True, ignore=shutil.ignore_patterns("dpo", "package"))
    settings = DemoSettings(**{**TINY_FINISH, "speech_polish_steps": 1, "speech_polish_lr": 1.0})
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


def test_the_recipe_at_group_size_one_trains_again_what_rests_on_the_grouping(packaged, tmp_path):
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
    build = DemoBuild(root, DemoSettings(**TINY_FINISH, group_size=1), log=lambda _: None)
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
