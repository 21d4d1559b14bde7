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
  (``FunAudioChatProcessor.save_pretrained``: tokenizer files + processor_config.json).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .corpus import write_corpus

DONE_FILE = "stage.json"
TIMINGS_FILE = "timings.json"


@dataclass
class DemoSettings:
    """Settings of a demo build (the defaults reproduce the shipped model).

    seed: every seeded choice (held-out splits, initialisations); text_vocab_size: the BPE's size (merges
    plus 256 byte symbols; the special tokens come on top)."""

    seed: int = 0
    text_vocab_size: int = 1024


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


@dataclass(frozen=True)
class DemoStage:
    run: Callable[[DemoBuild], dict[str, Any]]
    description: str


STAGES: dict[str, DemoStage] = {
    "corpus": DemoStage(_corpus, "question -> answer text corpus with held-out phrasings and contents"),
    "text_tokenizer": DemoStage(
        _text_tokenizer, "byte-level BPE on the corpus and prompts, as a processor folder"
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
