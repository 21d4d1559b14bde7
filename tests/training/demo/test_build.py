"""The demo recipe's stages run in order, resume where they stopped, and refuse to run without inputs."""

import json
import shutil

import pytest
import yaml
from funaudiochat.drsr.processing import FunAudioChatProcessor
from funaudiochat.drsr.prompts import format_tool_call
from funaudiochat.training.demo.build import STAGES, DemoBuild, DemoSettings, main
from funaudiochat.training.demo.context import default_precision


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


def test_text_lm_stage_with_skills_learns_tool_calls_and_copying_from_the_start(with_text_lm, tmp_path, tiny):

    from funaudiochat.drsr.prompts import ASR_INSTRUCTION

    for stage in ("corpus", "text_tokenizer"):
        shutil.copytree(with_text_lm / stage, tmp_path / stage)
    settings = DemoSettings(**tiny, text_lm_skills=True, text_lm_copies_from_start=True, text_lm_buckets=3)
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


def test_text_lm_copy_stage_continues_the_llm_with_copy_pairs_its_embeddings_frozen(
    with_text_lm, tmp_path, tiny
):

    import torch
    from funaudiochat.base.weights import read_safetensors
    from funaudiochat.drsr.prompts import ASR_INSTRUCTION

    for stage in ("corpus", "text_tokenizer", "text_lm"):
        shutil.copytree(with_text_lm / stage, tmp_path / stage)
    from funaudiochat.training.demo.text_stages import text_lm_pairs

    settings = DemoSettings(**{**tiny, "text_lm_copy_steps": 3, "text_lm_copy_tools": 2})
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
    DemoBuild(tmp_path, DemoSettings(**{**tiny, "text_lm_copy_steps": 0}), log=lambda _: None).run(
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
