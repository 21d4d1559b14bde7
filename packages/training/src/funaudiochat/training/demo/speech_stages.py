"""The speech stages of the demo recipe: espeak-ng speech, the speech tokenizer, the conversations."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .context import StageContext, fit_recipe
from .corpus import SPLITS
from .family import TASKS
from .reply_alignment import align_replies
from .text_stages import QA_TASKS, corpus_pairs

# espeak-ng voices: accents and voice variants (``espeak-ng --voices=en``, ``--voices=variant``)
TRAIN_VOICES = (
    "en-us",
    "en-us+m3",
    "en-us+f2",
    "en-us+f4",
    "en-us+klatt",
    "en-gb",
    "en-gb+m2",
    "en-gb+f3",
    "en-gb-x-rp+m5",
    "en-gb-x-rp+f1",
    "en-gb-scotland",
    "en-gb-scotland+f5",
    "en-029+m4",
    "en-gb-x-gbclan+m6",
)
EVAL_VOICES = ("en-us+m7", "en-gb+f1", "en-029+f2", "en-gb-x-gbcwmd", "en-gb-scotland+m1")
# The assistant voice is the one the independent recogniser hears best (it caps the S2S score): of seven
# US voices at 160 words/min, en-us+f5 (89 %) and en-us+f2 (89.5 %) against en-us+f3's 71 %
# (tools/experiments/assistant_voice.py, docs/experiments/demo_model/README.md); f2 speaks training questions.
# more voices for the practice questions only (``spoken_practice_voices``): other accents and variants,
# none a training, held-out or assistant voice, nor of the held-out voices' variants m1, m7 and f1
PRACTICE_VOICES = (
    "en-us-nyc",
    "en-gb+m4",
    "en-029+f3",
    "en-us+m6",
    "en-gb-x-rp+m8",
    "en-gb-scotland+f4",
    "en-gb-x-gbclan+f5",
    "en-us+klatt4",
    "en-029+m2",
    "en-us-nyc+m2",
)
ASSISTANT_VOICE = "en-us+f5"
ASSISTANT_SPEED = 160
# many more voices for the listening path (``listening_voices``): the accents of the training voices and New
# York's, each with 40 variants (``espeak-ng --voices=variant``; an unknown variant silently falls back to
# the accent's own voice). Never the held-out accent (West Midlands), a held-out variant (m1, m7, f1),
# a held-out, training or assistant voice. Ordered variant by variant: the first N share out the accents.
LISTENING_ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-029",
    "en-us-nyc",
)
LISTENING_VARIANTS = (
    *("m2", "m3", "m4", "m5", "m6", "m8", "f2", "f3", "f4"),
    *("klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6"),
    *("adam", "Alex", "Andy", "Annie", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb"),
    *("david", "ed", "edward", "gustave", "iven", "john", "linda", "max", "michel", "pablo"),
    *("paul", "quincy", "rob", "robert", "steph"),
)
LISTENING_VOICES = tuple(
    voice
    for variant in LISTENING_VARIANTS
    for accent in LISTENING_ACCENTS
    if (voice := f"{accent}+{variant}") not in (*TRAIN_VOICES, *EVAL_VOICES, ASSISTANT_VOICE)
)
QUESTION_SPEEDS = (130, 150, 170, 190)
NOISE_SNR_DB = 20.0


SPEECH_GROUPS = ("train_a", "train_b", "heldout")


def _speak(
    pairs_files: list[Path],
    out: Path,
    voices: Sequence[str],
    seed: int,
    snr_db: float | None,
    limit: int | None,
) -> dict:
    """``funaudiochat-synth`` on the pairs of ``pairs_files`` (joined; the first ``limit`` of each file
    when given) into ``out`` (built beside it and renamed into place); returns the pair count."""
    from funaudiochat.base.atomic import atomic_folder

    from ..data.synth import main as synth_main

    lines = []
    for path in pairs_files:
        lines += [line for line in path.read_text(encoding="utf-8").splitlines() if line][:limit]
    with atomic_folder(out) as staging:
        joined = staging / "pairs.jsonl"
        joined.write_text("\n".join(lines) + "\n", encoding="utf-8")
        argv = [
            str(joined),
            "--out",
            str(staging),
            "--voices",
            ",".join(voices),
            "--speeds",
            ",".join(str(s) for s in QUESTION_SPEEDS),
            "--answer-voice",
            ASSISTANT_VOICE,
            "--answer-speed",
            str(ASSISTANT_SPEED),
            "--seed",
            str(seed),
            "--relative-paths",
            # the speech tokenizer is trained on this speech, then codes the answers (speech_tokenizer/data)
            "--format",
            "manifest",
            "--no-codes",
        ]
        if snr_db is not None:
            argv += ["--snr-db", str(snr_db)]
        if synth_main(argv) != 0:
            raise RuntimeError(f"funaudiochat-synth failed for {out}")
    return {"pairs": len(lines)}


def run_speech(build: StageContext) -> dict[str, Any]:
    corpus = build.require("corpus", "speech")
    out, seed, limit = build.folder("speech"), build.settings.seed, build.settings.pairs_per_file
    train = [corpus / "pairs_train.jsonl", corpus / "tools_train.jsonl"]
    heldout = [corpus / f"{kind}_{split}.jsonl" for kind in ("pairs", "tools") for split in SPLITS[1:]]
    return {
        "train_a": _speak(train, out / "train_a", TRAIN_VOICES, seed, None, limit),
        "train_b": _speak(train, out / "train_b", TRAIN_VOICES, seed + 1, NOISE_SNR_DB, limit),
        "heldout": _speak(heldout, out / "heldout", EVAL_VOICES, seed, None, limit),
    }


def speak_training_in_heldout_voices(
    run: Path, group: str = "train_heldout_voices", limit: int | None = None
) -> Path:
    """The training pairs of a demo run folder spoken in the held-out voices (``EVAL_VOICES``) as the
    speech group ``group`` (``run/speech_tokenizer/data/<group>/``, where ``demo_eval.heldout_items`` reads
    groups; kept when it is there): known questions in new voices, which tell the voices' share of the
    held-out errors from the new phrasings' and contents'. ``limit``: the first that many pairs only.
    Returns the group's folder."""
    out = Path(run) / "speech_tokenizer" / "data" / group
    if not (out / "manifest.jsonl").is_file():
        _speak([Path(run) / "corpus" / "pairs_train.jsonl"], out, EVAL_VOICES, 7, None, limit)
    return out


def run_practice_speech(build: StageContext) -> dict[str, Any]:
    """``spoken_practice`` practice questions (``corpus.practice_questions``: new wordings of training
    contents) spoken in the training voices and ``spoken_practice_voices`` more (``PRACTICE_VOICES``) ->
    ``practice_speech/audio/`` and ``practice.jsonl`` lines ``{"id", "question", "answer", "audio"}``
    (none at 0), which ``conversations`` answers in text."""
    from funaudiochat.base.atomic import atomic_write_text

    from .corpus import practice_questions
    from .spliced_speech import speak_sentences

    out, settings = build.folder("practice_speech"), build.settings
    more = settings.spoken_practice_voices
    if not 0 <= more <= len(PRACTICE_VOICES):
        raise ValueError(f"spoken_practice_voices must be 0 to {len(PRACTICE_VOICES)}, got {more}")
    out.mkdir(parents=True, exist_ok=True)
    records = practice_questions(settings.seed, settings.spoken_practice)
    if records:
        questions = [record["question"] for record in records]
        voices = TRAIN_VOICES + PRACTICE_VOICES[:more]
        spoken = speak_sentences(questions, out / "audio", voices, QUESTION_SPEEDS, settings.seed, "practice")
        records = [{**record, "audio": line["audio"]} for record, line in zip(records, spoken, strict=True)]
    atomic_write_text(out / "practice.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    return {"questions": len(records)}


def spoken_question(audio: str | Path, text: str):
    """The ``UserAudio`` of a spoken question or sentence: the file ``audio`` (its 25 Hz frame count read
    from it), its words ``text`` as ``ref_text``."""
    import soundfile

    from ..data.records import UserAudio

    frames = int(soundfile.info(str(audio)).duration * 25)
    return UserAudio(str(audio), max(frames, 1), ref_text=text)


def text_answered(audio: str | Path, question: str, answer: str, source: str = ""):
    """The S2T training ``Conversation`` of a spoken question: its audio alone (``DEFAULT_S2T_PROMPT``),
    answered in text with ``answer`` as the text LLM answers it written. ``question``: its words."""
    from funaudiochat.drsr.prompts import DEFAULT_S2T_PROMPT

    from ..data import Conversation, Turn
    from ..data.records import AUDIO_TEMPLATE

    turns = [Turn("user", AUDIO_TEMPLATE), Turn("assistant", answer)]
    return Conversation(turns, [spoken_question(audio, question)], DEFAULT_S2T_PROMPT, source=source)


def practice_conversations(practice: Path) -> list:
    """The S2T training conversations of the ``practice_speech`` folder ``practice``: each spoken practice
    question answered in text (``text_answered``)."""
    lines = (practice / "practice.jsonl").read_text(encoding="utf-8").splitlines()
    return [
        text_answered(r["audio"], r["question"], r["answer"], source=r["id"])
        for r in map(json.loads, filter(None, lines))
    ]


def recode_answers(source: Path, out: Path, tokenizer_path: Path) -> int:
    """The manifest of ``source`` with every answer re-coded by the speech tokenizer at
    ``tokenizer_path``, written (manifest.jsonl and sharegpt train.jsonl, audio paths absolute) into
    ``out``; returns the number of entries."""
    import dataclasses

    from funaudiochat.base.atomic import atomic_folder
    from funaudiochat.tokenizer import SpeechTokenizer

    from ..data import read_manifest, write_manifest, write_sharegpt
    from ..data.synth import encode_files

    tokenizer = SpeechTokenizer.from_safetensors(tokenizer_path).eval()
    entries = read_manifest(source / "manifest.jsonl")
    codes = encode_files(tokenizer, [e.answer_audio for e in entries])
    recoded = [
        dataclasses.replace(e, answer_codes=c, audio_info=None, answer_info=None)
        for e, c in zip(entries, codes, strict=True)
    ]
    with atomic_folder(out) as staging:
        write_manifest(staging / "manifest.jsonl", recoded)
        write_sharegpt(staging / "train.jsonl", [e.to_conversation() for e in recoded])
    return len(recoded)


def write_utterances(speech: Path, path: Path, extra: Sequence[dict[str, str]] = ()) -> int:
    """Every training question and answer of ``speech`` (the ``speech`` stage's folder), then the lines of
    ``extra``, as a transcribed audio manifest (``{"audio", "text"}`` lines) at ``path``; returns the
    number of lines."""
    from funaudiochat.base.atomic import atomic_write_text

    from ..data import read_manifest

    lines = []
    for group in ("train_a", "train_b"):
        for entry in read_manifest(speech / group / "manifest.jsonl"):
            lines.append({"audio": str(Path(entry.audio).resolve()), "text": entry.text})
            lines.append({"audio": str(Path(entry.answer_audio).resolve()), "text": entry.answer_text})
    lines += [{"audio": line["audio"], "text": line["text"]} for line in extra]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(line) + "\n" for line in lines))
    return len(lines)


def run_speech_tokenizer(build: StageContext) -> dict[str, Any]:
    speech, out = build.require("speech", "speech_tokenizer"), build.folder("speech_tokenizer")
    count = write_utterances(speech, out / "utterances.jsonl")
    weights = out / "speech_tokenizer.safetensors"
    fit_recipe(
        "tokenizer",
        out / "run",
        [
            f"data.train={out / 'utterances.jsonl'}",
            "data.units=phonemes",
            f"trainer.max_steps={build.settings.tokenizer_steps}",
            f"model.export_path={weights}",
            f"seed={build.settings.seed}",
        ],
        product=weights,
        precision="32-true",  # its codes are what every speech stage learns; bf16 here is unmeasured
    )
    counts = {group: recode_answers(speech / group, out / "data" / group, weights) for group in SPEECH_GROUPS}
    return {"utterances": count, "steps": build.settings.tokenizer_steps, "recoded": counts}


REPLIES = ("s2s", "s2t", "asr")


def conversation_for(entry, record: dict, tools: list[dict], reply: str = "s2s"):
    """The training ``Conversation`` of one spoken pair (``ManifestEntry`` ``entry``, corpus ``record``).
    A question-answering pair is answered by ``reply``: in speech (``"s2s"``), in text only (``"s2t"``),
    or transcribed (``"asr"``: the question's words, which teaches the LLM to read what it hears); a
    transcription or tool pair gets its own text reply whatever ``reply`` says."""
    if reply not in REPLIES:
        raise ValueError(f"reply must be one of {list(REPLIES)}, got {reply!r}")
    from funaudiochat.drsr.prompts import (
        ASR_INSTRUCTION,
        DEFAULT_S2T_PROMPT,
        format_tool_call,
        function_calling_prompt,
    )

    from ..data import Conversation, Turn
    from ..data.records import AUDIO_TEMPLATE

    s2s = entry.to_conversation()  # the S2S example: the question's audio, then the spoken answer
    if record["task"] in QA_TASKS and reply == "s2s":
        return s2s
    question = s2s.audios[0]
    if record["task"] in QA_TASKS and reply == "asr":
        turns = [Turn("user", AUDIO_TEMPLATE + ASR_INSTRUCTION), Turn("assistant", record["question"])]
        system = DEFAULT_S2T_PROMPT
    elif record["task"] in QA_TASKS:
        turns = [Turn("user", AUDIO_TEMPLATE), Turn("assistant", record["answer"])]
        system = DEFAULT_S2T_PROMPT
    elif record["task"] == "asr":
        turns = [Turn("user", AUDIO_TEMPLATE + ASR_INSTRUCTION), Turn("assistant", record["answer"])]
        system = DEFAULT_S2T_PROMPT
    elif record["task"] == "tool":
        call = format_tool_call(record["tool_call"]["name"], record["tool_call"]["arguments"])
        turns = [Turn("user", AUDIO_TEMPLATE), Turn("assistant", call)]
        system = function_calling_prompt(tools)
    else:
        raise ValueError(f"{record['id']}: unknown task {record['task']!r}")
    return Conversation(turns=turns, audios=[question], system=system, source=entry.id)


def run_conversations(build: StageContext) -> dict[str, Any]:
    from funaudiochat.base.atomic import atomic_folder

    from ..data import read_manifest, read_sharegpt, write_sharegpt

    corpus = build.require("corpus", "conversations")
    data = build.require("speech_tokenizer", "conversations") / "data"
    records = {r["id"]: r for r in corpus_pairs(corpus, SPLITS, tasks=TASKS)}
    tools = json.loads((corpus / "tools.json").read_text())
    # (speech group, reply): the clean and the noisy rendition answered in speech, the clean one also in
    # text only (S2T mode) and the noisy one transcribed (ASR: the LLM learns to read the words it then
    # answers); asr and tool pairs have their own text replies, so only their "s2s" renditions count
    groups = {
        "train": (("train_a", "s2s"), ("train_b", "s2s"), ("train_a", "s2t"), ("train_b", "asr")),
        "heldout": (("heldout", "s2s"),),
    }
    counts: dict[str, Counter] = {name: Counter() for name in groups}
    alignment: dict[str, dict[str, int]] = {}
    count_tokens = None
    if build.settings.reply_alignment == "words":
        count_tokens = token_counter(build.require("text_tokenizer", "conversations"))
    with atomic_folder(build.folder("conversations")) as staging:
        for name, members in groups.items():
            conversations = []
            for group, reply in members:
                for entry in read_manifest(data / group / "manifest.jsonl"):
                    record = records[entry.id]
                    if reply != "s2s" and record["task"] not in QA_TASKS:
                        continue
                    conversations.append(conversation_for(entry, record, tools, reply))
                    counts[name][record["task"] if reply == "s2s" else f"{record['task']}_{reply}"] += 1
            if name == "train":
                practice = practice_conversations(build.require("practice_speech", "conversations"))
                conversations += practice
                counts[name]["practice_s2t"] += len(practice)
            if count_tokens is not None:
                alignment[name] = align_replies(conversations, count_tokens, build.settings.group_size)
            write_sharegpt(staging / f"{name}.jsonl", conversations)
            read_sharegpt(staging / f"{name}.jsonl")
    result: dict[str, Any] = {"conversations": {name: dict(tasks) for name, tasks in counts.items()}}
    result["reply_alignment"] = {"kind": build.settings.reply_alignment, **alignment}
    return result


def token_counter(folder: Path):
    """The number of text tokens of a piece of reply text, by the text tokenizer in ``folder``."""
    from funaudiochat.drsr.processing import FunAudioChatProcessor

    tokenizer = FunAudioChatProcessor.from_pretrained(folder).tokenizer
    return lambda piece: len(tokenizer(piece, add_special_tokens=False)["input_ids"])
