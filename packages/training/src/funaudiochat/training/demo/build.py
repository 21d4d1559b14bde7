"""The demo model's recipe as resumable stages: each writes one folder under the run folder and marks it done.

    python tools/train_demo.py [--out runs/demo] [--stage NAME ...] [--seed 0] [--force]

A stage is skipped when its folder holds ``stage.json`` (written last, with the stage's settings and its
seconds), so a killed run resumes at the first unfinished stage; ``--stage`` runs only the named stages
(their inputs must be done), ``--force`` redoes them. Quick stages build their folder in a temporary
folder renamed into place (``funaudiochat.base.atomic.atomic_folder``); Lightning stages resume from their
own checkpoints. ``timings.json`` in the run folder collects every stage's seconds.

Stages so far (issue 12 adds the rest in order):

- ``corpus``: the question -> answer text corpus (``corpus.write_corpus``);
- ``text_tokenizer``: a byte-level BPE trained on every text the model will read or write (questions,
  answers, the system prompts, the tool schemas and calls), saved as the processor's folder
  (``FunAudioChatProcessor.save_pretrained``: tokenizer files + processor_config.json);
- ``text_lm``: the text LLM (the ``text_lm`` recipe, the stand-in for Qwen3) on the training pairs of the
  question-answering tasks (arithmetic, compare, fact, instruction), exported to ``text_lm/model``; its
  greedy answers to the held-out pairs are scored by their keys (``corpus.contains_key``): the text
  knowledge the later stages must keep;
- ``speech``: every pair spoken with espeak-ng (``funaudiochat-synth``): the training pairs twice (two
  seeded draws of voice and speed from ``TRAIN_VOICES`` x ``QUESTION_SPEEDS``, the second with noise at
  ``NOISE_SNR_DB``) into ``speech/train_a`` and ``speech/train_b``, the held-out pairs (phrasings and
  contents) in ``EVAL_VOICES``, which training never hears, into ``speech/heldout``; answers always in
  ``ASSISTANT_VOICE``. Answer codes come from the tiny random tokenizer here; the speech-tokenizer stage
  trains the real one and re-codes them;
- ``speech_tokenizer``: the speech tokenizer (the ``tokenizer`` recipe: FSQ codes trained with CTC on
  phonemes) on every training question and answer, then every answer re-coded with it: the data of the
  later stages is ``speech_tokenizer/data/<group>/`` (``manifest.jsonl`` and sharegpt ``train.jsonl``).
  A killed run resumes from its last checkpoint (as does ``text_lm``);
- ``conversations``: the training examples in the official sharegpt layout, per task as the pipeline
  prompts them: question-answering pairs as S2S (``DEFAULT_S2M_PROMPT``; the answer's text and codes),
  transcription as S2T (``DEFAULT_S2T_PROMPT``, the question audio followed by ``ASR_INSTRUCTION``, the
  transcript as text), tool requests as S2T function calling (``function_calling_prompt(TOOLS)``, the
  call as text): ``conversations/train.jsonl`` (both spoken renditions) and ``heldout.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .corpus import SPLITS, write_corpus

DONE_FILE = "stage.json"
TIMINGS_FILE = "timings.json"

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
ASSISTANT_VOICE = "en-us+f3"
ASSISTANT_SPEED = 160
QUESTION_SPEEDS = (130, 150, 170, 190)
NOISE_SNR_DB = 20.0


@dataclass
class DemoSettings:
    """Settings of a demo build (the defaults reproduce the shipped model).

    seed: every seeded choice (held-out splits, initialisations); text_vocab_size: the BPE's size (merges
    plus 256 byte symbols; the special tokens come on top); pairs_per_file: speak only the first pairs of
    each corpus file (tests; None: all); tokenizer_steps / text_lm_steps: training steps of the speech
    tokenizer and of the text LLM; text_lm_size: "demo" (the recipe's sizes) or "tiny" (tests)."""

    seed: int = 0
    text_vocab_size: int = 1024
    pairs_per_file: int | None = None
    tokenizer_steps: int = 3000
    text_lm_steps: int = 1000
    text_lm_size: str = "demo"


@dataclass
class DemoBuild:
    """A run folder and its settings; ``run(names)`` runs stages in recipe order."""

    root: Path
    settings: DemoSettings = field(default_factory=DemoSettings)
    log: Callable[[str], None] = print

    def folder(self, stage: str) -> Path:
        return self.root / stage

    def done(self, stage: str) -> bool:
        return (self.folder(stage) / DONE_FILE).is_file()

    def require(self, stage: str, by: str) -> Path:
        """The folder of a finished stage that ``by`` reads (else a ``ValueError`` saying what to run)."""
        if not self.done(stage):
            raise ValueError(
                f"stage {by!r} needs stage {stage!r}, which has not finished in {self.root}; run "
                f"`python tools/train_demo.py --out {self.root} --stage {stage}` (or the whole recipe)"
            )
        return self.folder(stage)

    def run(self, names: Sequence[str] | None = None, force: bool = False) -> dict[str, float]:
        """Run ``names`` (default: every stage) in recipe order; returns the seconds of each stage run now."""
        wanted = list(STAGES) if not names else list(names)
        unknown = [name for name in wanted if name not in STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; the stages are {list(STAGES)}")
        took = {}
        for name in STAGES:
            if name not in wanted:
                continue
            if self.done(name) and not force:
                self.log(f"[{name}] done already ({self.folder(name)})")
                continue
            self.log(f"[{name}] {STAGES[name].description}")
            start = time.perf_counter()
            record = STAGES[name].run(self)
            took[name] = time.perf_counter() - start
            self._mark_done(name, took[name], record)
            self.log(f"[{name}] finished in {took[name]:.1f} s")
        return took

    def _mark_done(self, name: str, seconds: float, record: dict[str, Any]) -> None:
        from funaudiochat.base.atomic import atomic_write_text

        entry = {"stage": name, "seconds": round(seconds, 2), "settings": vars(self.settings), **record}
        atomic_write_text(self.folder(name) / DONE_FILE, json.dumps(entry, indent=2) + "\n")
        timings_path = self.root / TIMINGS_FILE
        timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
        timings[name] = entry["seconds"]
        atomic_write_text(timings_path, json.dumps(timings, indent=2) + "\n")


# ---- stages -----------------------------------------------------------------------------------------


def _corpus(build: DemoBuild) -> dict[str, Any]:
    out = build.folder("corpus")
    write_corpus(out, build.settings.seed)
    stats = json.loads((out / "stats.json").read_text())
    return {"pairs": stats.get("pairs", stats)}


def tokenizer_texts(corpus_folder: Path) -> list[str]:
    """Every text the demo model reads or writes: the corpus' questions and answers, the system prompts,
    the ASR instruction, the function-calling prompt with the tool schemas, and each tool call."""
    from funaudiochat.drsr.prompts import (
        ASR_INSTRUCTION,
        DEFAULT_S2M_PROMPT,
        DEFAULT_S2T_PROMPT,
        format_tool_call,
        function_calling_prompt,
    )

    tools = json.loads((corpus_folder / "tools.json").read_text())
    texts = [DEFAULT_S2M_PROMPT, DEFAULT_S2T_PROMPT, ASR_INSTRUCTION, function_calling_prompt(tools)]
    for line in (corpus_folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        pair = json.loads(line)
        texts += [pair["question"], pair["answer"]]
        if pair.get("tool_call"):
            texts.append(format_tool_call(pair["tool_call"]["name"], pair["tool_call"]["arguments"]))
    return texts


def _text_tokenizer(build: DemoBuild) -> dict[str, Any]:
    from funaudiochat.base.atomic import atomic_folder
    from funaudiochat.drsr.processing import FunAudioChatProcessor
    from funaudiochat.drsr.text_tokenizer import train_text_tokenizer

    texts = tokenizer_texts(build.require("corpus", "text_tokenizer"))
    tokenizer = train_text_tokenizer(texts, vocab_size=build.settings.text_vocab_size)
    with atomic_folder(build.folder("text_tokenizer")) as staging:
        FunAudioChatProcessor(tokenizer).save_pretrained(staging)
    lengths = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
    return {
        "vocab_size": len(tokenizer),
        "texts": len(texts),
        "mean_tokens_per_text": sum(lengths) / len(texts),
    }


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
        ]
        if snr_db is not None:
            argv += ["--snr-db", str(snr_db)]
        if synth_main(argv) != 0:
            raise RuntimeError(f"funaudiochat-synth failed for {out}")
    return {"pairs": len(lines)}


def _speech(build: DemoBuild) -> dict[str, Any]:
    corpus = build.require("corpus", "speech")
    out, seed, limit = build.folder("speech"), build.settings.seed, build.settings.pairs_per_file
    train = [corpus / "pairs_train.jsonl", corpus / "tools_train.jsonl"]
    heldout = [corpus / f"{kind}_{split}.jsonl" for kind in ("pairs", "tools") for split in SPLITS[1:]]
    return {
        "train_a": _speak(train, out / "train_a", TRAIN_VOICES, seed, None, limit),
        "train_b": _speak(train, out / "train_b", TRAIN_VOICES, seed + 1, NOISE_SNR_DB, limit),
        "heldout": _speak(heldout, out / "heldout", EVAL_VOICES, seed, None, limit),
    }


RECIPES = Path(__file__).resolve().parents[4] / "recipes"  # packages/training/recipes
SPEECH_GROUPS = ("train_a", "train_b", "heldout")


def fit_recipe(recipe: str, run_dir: Path, overrides: Sequence[str]) -> None:
    """``funaudiochat-train fit`` of ``recipes/<recipe>.yaml`` in ``run_dir``, resuming from its newest
    checkpoint when it has one."""
    from ..cli import fit

    overrides = [f"trainer.default_root_dir={run_dir}", *overrides]
    checkpoints = sorted(run_dir.rglob("*.ckpt"), key=lambda path: path.stat().st_mtime)
    if checkpoints:  # the newest (a new run logs into a new version folder, so "last" would not find it)
        overrides.append(f"ckpt_path={checkpoints[-1]}")
    fit([RECIPES / f"{recipe}.yaml"], overrides)


def recode_answers(source: Path, out: Path, tokenizer_path: Path) -> int:
    """The manifest of ``source`` with every answer re-coded by the speech tokenizer at
    ``tokenizer_path``, written (manifest.jsonl and sharegpt train.jsonl, audio paths absolute) into
    ``out``; returns the number of entries."""
    import dataclasses

    import numpy as np
    from funaudiochat.base.atomic import atomic_folder
    from funaudiochat.tokenizer import SpeechTokenizer, load_audio

    from ..data import read_manifest, write_manifest, write_sharegpt

    tokenizer = SpeechTokenizer.from_safetensors(tokenizer_path).eval()
    entries = read_manifest(source / "manifest.jsonl")
    recoded = []
    for start in range(0, len(entries), 16):
        batch = entries[start : start + 16]
        codes = tokenizer.encode([load_audio(e.answer_audio) for e in batch])
        recoded += [
            dataclasses.replace(e, answer_codes=c.numpy().astype(np.int16), audio_info=None, answer_info=None)
            for e, c in zip(batch, codes, strict=True)
        ]
    with atomic_folder(out) as staging:
        write_manifest(staging / "manifest.jsonl", recoded)
        write_sharegpt(staging / "train.jsonl", [e.to_conversation() for e in recoded])
    return len(recoded)


def _speech_tokenizer(build: DemoBuild) -> dict[str, Any]:
    from funaudiochat.base.atomic import atomic_write_text

    from ..data import read_manifest

    speech, out = build.require("speech", "speech_tokenizer"), build.folder("speech_tokenizer")
    lines = []
    for group in ("train_a", "train_b"):
        for entry in read_manifest(speech / group / "manifest.jsonl"):
            lines.append({"audio": entry.audio, "text": entry.text})
            lines.append({"audio": entry.answer_audio, "text": entry.answer_text})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "utterances.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
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
    )
    counts = {group: recode_answers(speech / group, out / "data" / group, weights) for group in SPEECH_GROUPS}
    return {"utterances": len(lines), "steps": build.settings.tokenizer_steps, "recoded": counts}


QA_TASKS = ("arithmetic", "compare", "fact", "instruction")
TASK_NAMES = (*QA_TASKS, "tool", "asr")


def corpus_pairs(corpus_folder: Path, splits: Sequence[str], tasks: Sequence[str] = QA_TASKS) -> list[dict]:
    """The corpus pairs (``corpus.jsonl`` records) of ``splits`` and ``tasks``."""
    lines = (corpus_folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line]
    return [r for r in records if r["split"] in splits and r["task"] in tasks]


def text_accuracy(model, tokenizer, pairs: Sequence[dict]) -> dict[str, Any]:
    """Greedy text answers of a causal LM to ``pairs`` scored by their keys: overall and per task."""
    import torch

    from ..llm.text_lm import generate_answer
    from .corpus import contains_key

    right: dict[str, list[bool]] = {}
    with torch.no_grad():
        for pair in pairs:
            answer = generate_answer(model, tokenizer, pair["question"], max_new_tokens=48)
            right.setdefault(pair["task"], []).append(contains_key(answer, pair["key"]))
    every = [ok for oks in right.values() for ok in oks]
    return {
        "accuracy": sum(every) / max(1, len(every)),
        "pairs": len(every),
        "per_task": {task: sum(oks) / len(oks) for task, oks in sorted(right.items())},
    }


def _text_lm(build: DemoBuild) -> dict[str, Any]:
    from funaudiochat.base.atomic import atomic_write_text
    from transformers import AutoModelForCausalLM, AutoTokenizer

    corpus = build.require("corpus", "text_lm")
    tokenizer_folder = build.require("text_tokenizer", "text_lm")
    out = build.folder("text_lm")
    out.mkdir(parents=True, exist_ok=True)
    train = corpus_pairs(corpus, ["train"])
    lines = "".join(json.dumps({"question": r["question"], "answer": r["answer"]}) + "\n" for r in train)
    atomic_write_text(out / "pairs.jsonl", lines)
    overrides = [
        f"data.train={out / 'pairs.jsonl'}",
        f"data.tokenizer={tokenizer_folder}",
        f"trainer.max_steps={build.settings.text_lm_steps}",
        f"model.export_dir={out / 'model'}",
        f"seed={build.settings.seed}",
    ]
    if build.settings.text_lm_size == "tiny":  # the LLM of FunAudioChatConfig.tiny (tests)
        tiny = dict(hidden_size=64, num_hidden_layers=2, head_dim=16, intermediate_size=128)
        overrides += [f"model.llm.{key}={value}" for key, value in tiny.items()]
    fit_recipe("text_lm", out / "run", overrides)
    model = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    heldout = corpus_pairs(corpus, SPLITS[1:])[: build.settings.pairs_per_file]
    return {"train_pairs": len(train), "heldout": text_accuracy(model, tokenizer, heldout)}


def conversation_for(entry, record: dict, tools: list[dict]):
    """The training ``Conversation`` of one spoken pair (``ManifestEntry`` ``entry``, corpus ``record``)."""
    from funaudiochat.drsr.prompts import (
        ASR_INSTRUCTION,
        DEFAULT_S2T_PROMPT,
        format_tool_call,
        function_calling_prompt,
    )

    from ..data import Conversation, Turn, UserAudio
    from ..data.audio_probe import probe_audio
    from ..data.records import AUDIO_TEMPLATE

    if record["task"] in QA_TASKS:
        return entry.to_conversation()
    frames = probe_audio(entry.audio, max_seconds=None).speech_frames_16k
    question = UserAudio(entry.audio, frames, ref_text=entry.text)
    if record["task"] == "asr":
        turns = [Turn("user", AUDIO_TEMPLATE + ASR_INSTRUCTION), Turn("assistant", record["answer"])]
        system = DEFAULT_S2T_PROMPT
    elif record["task"] == "tool":
        call = format_tool_call(record["tool_call"]["name"], record["tool_call"]["arguments"])
        turns = [Turn("user", AUDIO_TEMPLATE), Turn("assistant", call)]
        system = function_calling_prompt(tools)
    else:
        raise ValueError(f"{record['id']}: unknown task {record['task']!r}")
    return Conversation(turns=turns, audios=[question], system=system, source=entry.id)


def _conversations(build: DemoBuild) -> dict[str, Any]:
    from funaudiochat.base.atomic import atomic_folder

    from ..data import read_manifest, read_sharegpt, write_sharegpt

    corpus = build.require("corpus", "conversations")
    data = build.require("speech_tokenizer", "conversations") / "data"
    records = {r["id"]: r for r in corpus_pairs(corpus, SPLITS, tasks=TASK_NAMES)}
    tools = json.loads((corpus / "tools.json").read_text())
    groups = {"train": ("train_a", "train_b"), "heldout": ("heldout",)}
    counts: dict[str, dict[str, int]] = {}
    with atomic_folder(build.folder("conversations")) as staging:
        for name, members in groups.items():
            conversations = []
            for group in members:
                for entry in read_manifest(data / group / "manifest.jsonl"):
                    record = records[entry.id]
                    conversations.append(conversation_for(entry, record, tools))
                    counts.setdefault(name, {}).setdefault(record["task"], 0)
                    counts[name][record["task"]] += 1
            write_sharegpt(staging / f"{name}.jsonl", conversations)
            read_sharegpt(staging / f"{name}.jsonl")
    return {"conversations": counts}


@dataclass(frozen=True)
class DemoStage:
    run: Callable[[DemoBuild], dict[str, Any]]
    description: str


STAGES: dict[str, DemoStage] = {
    "corpus": DemoStage(_corpus, "question -> answer text corpus with held-out phrasings and contents"),
    "text_tokenizer": DemoStage(
        _text_tokenizer, "byte-level BPE on the corpus and prompts, as a processor folder"
    ),
    "text_lm": DemoStage(
        _text_lm, "the text LLM trained on the question-answering pairs (the Qwen3 stand-in)"
    ),
    "speech": DemoStage(_speech, "questions and answers spoken by espeak-ng (training and held-out voices)"),
    "speech_tokenizer": DemoStage(
        _speech_tokenizer, "speech tokenizer trained on the spoken corpus; answers re-coded with it"
    ),
    "conversations": DemoStage(
        _conversations, "training conversations: S2S answers, S2T transcripts and calls"
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (default runs/demo)")
    parser.add_argument("--stage", action="append", help=f"run only this stage (repeatable): {list(STAGES)}")
    parser.add_argument("--force", action="store_true", help="redo stages that are done")
    parser.add_argument("--seed", type=int, default=DemoSettings.seed)
    args = parser.parse_args(argv)
    build = DemoBuild(args.out, DemoSettings(seed=args.seed))
    try:
        build.run(args.stage, force=args.force)
    except ValueError as error:
        parser.exit(2, f"train_demo: {error}\n")
    return 0
