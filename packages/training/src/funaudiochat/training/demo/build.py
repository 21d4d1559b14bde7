"""The demo model's recipe as resumable stages: each writes one folder under the run folder and marks it done.

    python tools/train_demo.py [--out runs/demo] [--stage NAME ...] [--seed 0] [--force] [--set NAME=VALUE]
                               [--jobs N] [--restore-products DIR]
    python tools/train_demo.py --out runs/demo --save-products DIR
    python tools/train_demo.py --out runs/repro --compare-products DIR

A stage is skipped when its folder holds ``stage.json`` (written last, with the stage's settings and its
seconds), so a killed run resumes at the first unfinished stage; ``--stage`` runs only the named stages
(their inputs must be done), ``--force`` redoes them. Quick stages build their folder in a temporary
folder renamed into place (``funaudiochat.base.atomic.atomic_folder``); Lightning stages resume from their
own checkpoints. A stage's seconds are those of all its attempts (``stage_clock``: a killed attempt loses
at most 30 s of its record); ``timings.json`` in the run folder collects every stage's seconds, and
``clock/build.json`` the build's own wall clock: the seconds ``train_demo.py`` has spent running stages in
the folder, over every invocation, pauses left out (``BUILD_CLOCK``; a stage started by a schedule does not
count twice).
``--jobs N`` runs up to N stages at once, each in its own process (log: ``logs/<stage>.log``) as soon as
the stages it ``needs`` are done (``schedule``): the vocoders train beside the LLM chain. ``--jobs 1`` (the
default) runs them one after the other, each in its own process too (output to the console): one process
that had run the tower's stages ran the later stages 2-3x slower (``docs/demo_model.md``).
``--save-products DIR`` keeps what the finished stages trained, and ``--restore-products DIR`` gives it to
another run folder, which then trains only what it lacks (``products``): how a build continues in a later
session on a fresh machine; ``--compare-products DIR`` says how far a run's own products are from those
saved there (``product_compare``: is the recipe reproducible?).

The stages, in order; their code is in ``text_stages``, ``speech_stages``, ``model_stages``,
``finetune_stages``, ``vocoder_stages`` and ``package_stage``, what they share in ``context``:

- ``corpus``: the question -> answer text corpus (``corpus.write_corpus``);
- ``text_tokenizer``: a byte-level BPE trained on every text the model will read or write (questions,
  answers, the system prompts, the tool schemas and calls), saved as the processor's folder
  (``FunAudioChatProcessor.save_pretrained``: tokenizer files + processor_config.json);
- ``text_lm``: the text LLM (the ``text_lm`` recipe, the stand-in for Qwen3) on the question-answering
  tasks (arithmetic, compare, fact, instruction), exported to ``text_lm/model``. Like a pretrained LLM it
  knows every content: it trains on every content item, the held-out contents included (which the speech
  stages never see), each in ``knowledge_per_content`` training phrasings (``corpus.knowledge_pairs``),
  never in a held-out phrasing; its greedy answers to the held-out phrasings are scored by
  their keys (``corpus.contains_key``): the text accuracy the later stages must keep;
- ``text_lm_copy``: that LLM continued with copy pairs as well (``text_lm_copy_steps``; input embeddings
  frozen), as a pretrained LLM can copy any sentence, which transcription needs -> ``text_lm_copy/model``,
  the LLM the speech model starts from (the towers read ``text_lm``'s embeddings, the same); it also
  learns practice phrasings (``text_lm_copy_practice``, ``practice``: more wordings than the corpus');
- ``speech``: every pair spoken with espeak-ng (``funaudiochat-synth``): the training pairs twice (two
  seeded draws of voice and speed from ``TRAIN_VOICES`` x ``QUESTION_SPEEDS``, the second with noise at
  ``NOISE_SNR_DB``) into ``speech/train_a`` and ``speech/train_b``, the held-out pairs (phrasings and
  contents) in ``EVAL_VOICES``, which training never hears, into ``speech/heldout``; answers always in
  ``ASSISTANT_VOICE``. Answer codes come from the tiny random tokenizer here; the speech-tokenizer stage
  trains the real one and re-codes them;
- ``practice_speech``: ``spoken_practice`` practice questions of the training contents spoken in the
  training voices (``corpus.practice_questions``) -> ``practice_speech/practice.jsonl``;
- ``speech_tokenizer``: the speech tokenizer (the ``tokenizer`` recipe: FSQ codes trained with CTC on
  phonemes) on every training question and answer, then every answer re-coded with it: the data of the
  later stages is ``speech_tokenizer/data/<group>/`` (``manifest.jsonl`` and sharegpt ``train.jsonl``).
  A killed run resumes from its last checkpoint (as does ``text_lm``);
- ``audio_encoder``: the model's continuous audio tower alone, trained to transcribe the same utterances
  and sentences spliced from their text (``spliced_speech``) with CTC on characters and on the LLM's
  tokens (the ``audio_encoder`` recipe; against a table of its own with ``tower_token_table=learnt``, which
  needs no text LLM and trains beside it): the stand-in for the pretrained Whisper encoder the official
  model starts from -> ``audio_encoder/audio_encoder.safetensors``;
- ``tower_match``: that tower fine-tuned with the embedding match as well (``tower_match_steps``), its 5 Hz
  groups pulled onto the text LLM's embeddings of the words they hold, which the frozen LLM reads as it
  reads text -> ``tower_match/audio_encoder.safetensors``;
- ``conversations``: the training examples in the official sharegpt layout, per task as the pipeline
  prompts them: question-answering pairs as S2S (``DEFAULT_S2M_PROMPT``; the answer's text and codes)
  and, the clean rendition once more, as S2T (``DEFAULT_S2T_PROMPT``; the answer's text), the noisy one
  transcribed (``ASR_INSTRUCTION``; the question's words); transcription
  as S2T (the question audio followed by ``ASR_INSTRUCTION``, the transcript as text); tool requests as
  S2T function calling (``function_calling_prompt(TOOLS)``, the call as text); the spoken practice
  questions as S2T: ``conversations/train.jsonl`` (both spoken renditions) and ``heldout.jsonl``;
- ``pre_alignment``: the speech model (``demo_model_spec``: the text LLM's sizes and weights, the audio
  encoder of ``tower_match``, an SRH) trained with the LLM frozen (the ``pre_alignment`` recipe) in two
  fits: the listening path on the spoken questions answered in text (``listening_steps``, ->
  ``pre_alignment/listen/model``), then the speech output on the spoken replies, exported to
  ``pre_alignment/run/model``;
- ``core_cocktail``: the whole model fine-tuned on the same conversations (the ``core_cocktail`` recipe:
  stage 1, the LLM merged with the text LLM at ``cocktail_alpha``, stage 2) -> ``core_cocktail/run/model``;
- ``dpo``: multi-task DPO on preference pairs made from the training conversations
  (``finetune_stages.preference_rows``: wrong answers, truncated and garbled speech) -> ``dpo/run/model``;
  with ``speech_polish_steps`` then the speaking fit once more -> ``dpo/polish/model``;
- ``vocoder_hift`` / ``vocoder_flow``: HiFT and flow matching trained on the training answers (the
  assistant's voice; ``vocoder_stages``), the flow on the trained speech tokenizer's codes;
- ``package``: everything joined into one pipeline folder with a model card (``package_stage``): the
  folder ``funaudiochat chat --model`` loads, and the one the repository ships; with ``speech_timing`` its
  ``speech_timing.json`` is fitted on the training conversations' spoken replies.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import fcntl
import json
import resource
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .context import DemoSettings
from .finetune_stages import run_core_cocktail, run_dpo
from .model_stages import run_audio_encoder, run_pre_alignment, run_tower_match
from .package_stage import run_package
from .product_compare import compare_products
from .products import (
    DONE_FILE,
    RESTORED_FILE,
    SettingsReads,
    remove_products,
    restore_products,
    save_products,
)
from .schedule import StagesFailed, run_concurrently
from .speech_stages import (
    ASSISTANT_VOICE,
    EVAL_VOICES,
    TRAIN_VOICES,
    run_conversations,
    run_practice_speech,
    run_speech,
    run_speech_tokenizer,
)
from .stage_clock import BUILD_CLOCK, StageClock, clock_file, forget_attempts, runs_of_build
from .text_stages import run_corpus, run_text_lm, run_text_lm_copy, run_text_tokenizer
from .vocoder_stages import run_vocoder_flow, run_vocoder_hift

__all__ = ["ASSISTANT_VOICE", "EVAL_VOICES", "STAGES", "TRAIN_VOICES", "DemoBuild", "DemoSettings", "main"]

TIMINGS_FILE = "timings.json"
LOG_FOLDER = "logs"
# the flag a schedule gives the stages it starts: their time is already on the build's clock
SCHEDULED_FLAG = "--scheduled"
# runs ``main`` in a new process: how ``DemoBuild.run(jobs > 1 or processes=True)`` runs each stage
STAGE_COMMAND = (sys.executable, "-m", "funaudiochat.training.demo.build")


@dataclass
class DemoBuild:
    """A run folder and its settings; ``run(names)`` runs stages in recipe order.

    stages: the recipe (name -> ``DemoStage``, in order); stage_command: the argv prefix that runs ``main``
    over the same ``stages`` in a new process (``run(jobs > 1)`` appends ``--out``, ``--stage`` and the
    settings)."""

    root: Path
    settings: DemoSettings = field(default_factory=DemoSettings)
    log: Callable[[str], None] = print
    stages: dict[str, DemoStage] = field(default_factory=lambda: STAGES)
    stage_command: Sequence[str] = STAGE_COMMAND

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()  # stages write paths into files; they must not be relative
        if BUILD_CLOCK in self.stages:
            raise ValueError(
                f"no stage may be called {BUILD_CLOCK!r}: clock/{BUILD_CLOCK}.json is the build's"
            )

    def folder(self, stage: str) -> Path:
        return self.root / stage

    def done(self, stage: str) -> bool:
        return (self.folder(stage) / DONE_FILE).is_file()

    def needs(self, stage: str) -> tuple[str, ...]:
        """The stages ``stage`` reads at these settings (its ``needs`` less its ``skipped_needs``)."""
        spec = self.stages[stage]
        skipped = spec.skipped_needs(self.settings)
        return tuple(need for need in spec.needs if need not in skipped)

    def record(self, stage: str) -> dict[str, Any]:
        """The ``stage.json`` of a finished stage: its seconds, settings and what it measured ({} when the
        stage has not finished)."""
        path = self.folder(stage) / DONE_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def require(self, stage: str, by: str) -> Path:
        """The folder of a finished stage that ``by`` reads (else a ``ValueError`` saying what to run)."""
        if not self.done(stage):
            raise ValueError(
                f"stage {by!r} needs stage {stage!r}, which has not finished in {self.root}; run "
                f"`python tools/train_demo.py --out {self.root} --stage {stage}` (or the whole recipe)"
            )
        return self.folder(stage)

    def run(
        self,
        names: Sequence[str] | None = None,
        force: bool = False,
        jobs: int = 1,
        processes: bool = False,
        build_clock: bool = True,
    ) -> dict[str, float]:
        """Run ``names`` (default: every stage) and return the seconds of each stage run now.

        ``jobs`` = 1: one after the other in recipe order, in this process (with ``processes``, each in its
        own process, its output to this one's, unless only one stage is to run). ``jobs`` > 1: up to
        ``jobs`` at once, each in its own process, a stage as soon as its ``needs`` are done
        (``schedule``). When the stages run in processes of their own, those whose products were restored
        and whose needs are done run in this one first (they only check their products). With
        ``build_clock`` (not for a stage a schedule started) the time spent is added to the build's clock,
        ``clock/build.json`` (``BUILD_CLOCK``), when any stage was to run.

        Raises:
            ValueError: ``jobs`` < 1, an unknown stage; when the stages run in processes of their own also
                (before anything starts) a stage that needs one neither done nor run now.
            StagesFailed: with ``jobs`` > 1, a stage failed (see its log)."""
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, not {jobs}")
        wanted = list(self.stages) if not names else list(names)
        unknown = [name for name in wanted if name not in self.stages]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; the stages are {list(self.stages)}")
        todo = []
        for name in self.stages:
            if name not in wanted:
                continue
            if self.done(name) and not force:
                self.log(f"[{name}] done already ({self.folder(name)})")
                continue
            todo.append(name)
        concurrent = jobs > 1 or (processes and len(todo) > 1)
        if concurrent:  # each stage in a process of its own: refuse a missing need before any starts
            for name in todo:
                for need in self.needs(name):
                    if need not in todo:
                        self.require(need, name)
        if not todo or not build_clock:
            return self._run_todo(todo, force, jobs, concurrent)
        with StageClock(clock_file(self.root, BUILD_CLOCK)) as clock:
            took = self._run_todo(todo, force, jobs, concurrent)
        self.log(
            f"[{BUILD_CLOCK}] {clock.seconds:.0f} s of wall clock in this folder "
            f"({runs_of_build(clock.attempts)}, pauses not counted)"
        )
        return took

    def _run_todo(self, todo: list[str], force: bool, jobs: int, concurrent: bool) -> dict[str, float]:
        """``run``'s work once it knows the stages to run (``todo``, in recipe order) and whether each runs
        in a process of its own (``concurrent``)."""
        took: dict[str, float] = {}
        if concurrent:
            # stages whose products were restored only check them (seconds): run here first, so that none
            # shares the cores with a long stage starting beside it and keeps it to part of them
            for name in list(todo):  # recipe order: a restored stage's restored needs run before it
                if self._restored_and_ready(name, todo, force):
                    took[name] = self._run_here(name, force)
                    todo.remove(name)
            return {**took, **self._run_concurrently(todo, force, jobs, logs=jobs > 1)}
        for name in todo:
            took[name] = self._run_here(name, force)
        return took

    def _restored_and_ready(self, name: str, todo: list[str], force: bool) -> bool:
        """Whether stage ``name`` holds restored products (``products.restore_products``) and needs no stage
        of ``todo`` before it (not with ``force``: a forced stage trains again)."""
        restored = (self.folder(name) / RESTORED_FILE).is_file()
        return restored and not force and not any(need in todo for need in self.needs(name))

    def _run_here(self, name: str, force: bool) -> float:
        """Run stage ``name`` in this process, mark it done and return its seconds."""
        self.log(f"[{name}] {self.stages[name].description}")
        if force:
            remove_products(self.folder(name), self.stages[name].products)
            forget_attempts(clock_file(self.root, name))
        view = copy.copy(self)  # the stage sees the settings through a recorder of what it reads
        view.settings = reads = SettingsReads(self.settings)
        with StageClock(clock_file(self.root, name)) as clock:
            record = self.stages[name].run(view)
        seconds = clock.seconds
        # the process's peak so far: the stage's own when it ran in a process of its own (--jobs > 1)
        peak_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        record = {
            **record,
            "attempts": clock.attempts,
            **({"paused_seconds": round(clock.paused_seconds, 2)} if clock.paused_seconds else {}),
            "settings_read": sorted(reads.names),
            "process_peak_rss_mb": peak_mb,
        }
        self._mark_done(name, seconds, record)
        resumed = f" over {clock.attempts} attempts" if clock.attempts > 1 else ""
        paused = f" ({clock.paused_seconds:.0f} s paused, not counted)" if clock.paused_seconds else ""
        self.log(f"[{name}] finished in {seconds:.1f} s{resumed}{paused}")
        return seconds

    def _run_concurrently(self, todo: list[str], force: bool, jobs: int, logs: bool) -> dict[str, float]:
        """``todo`` (in recipe order) run by ``schedule.run_concurrently``, each as ``stage_command``; their
        output to ``logs/<stage>.log`` (``logs``) or to this process's. ``run`` has checked their needs."""
        settings = [
            arg for assignment in settings_assignments(self.settings) for arg in ("--set", assignment)
        ]
        flags = [SCHEDULED_FLAG, *(["--force"] if force else [])]
        commands = {
            name: [*self.stage_command, "--out", str(self.root), "--stage", name, *settings, *flags]
            for name in todo
        }
        needs = {name: [need for need in self.needs(name) if need in todo] for name in todo}
        log_dir = self.root / LOG_FOLDER if logs else None
        run_concurrently(commands, needs, jobs, log_dir, self.log)
        # each stage's own clock (pauses and earlier attempts' waits left out), not its process's wall time
        return {name: self.record(name)["seconds"] for name in todo}

    def _mark_done(self, name: str, seconds: float, record: dict[str, Any]) -> None:
        """Write the stage's ``stage.json`` and add its seconds to ``timings.json`` (locked: stages may run
        in several processes at once)."""
        from funaudiochat.base.atomic import atomic_write_text

        entry = {"stage": name, "seconds": round(seconds, 2), "settings": vars(self.settings), **record}
        restored = self.folder(name) / RESTORED_FILE
        if restored.is_file():  # its products came from another run (``products.restore_products``)
            entry["restored"] = json.loads(restored.read_text(encoding="utf-8"))
        atomic_write_text(self.folder(name) / DONE_FILE, json.dumps(entry, indent=2) + "\n")
        timings_path = self.root / TIMINGS_FILE
        with open(self.root / f"{TIMINGS_FILE}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
            timings[name] = entry["seconds"]
            atomic_write_text(timings_path, json.dumps(timings, indent=2) + "\n")


@dataclass(frozen=True)
class DemoStage:
    """A stage: ``run`` builds its folder and returns what ``stage.json`` records; ``needs`` names the
    stages it may read (its ``build.require`` calls), all earlier in the recipe, and ``skipped_needs`` those
    of them it does not read at the given settings (``DemoBuild.needs``: it starts without them);
    ``products`` are what its training made (paths or globs in its folder; ``products``): while they exist
    the stage does not train again, and ``--save-products`` keeps them."""

    run: Callable[[DemoBuild], dict[str, Any]]
    description: str
    needs: tuple[str, ...]
    products: tuple[str, ...] = ()
    skipped_needs: Callable[[DemoSettings], tuple[str, ...]] = lambda settings: ()


# The recipe's order is also the priority of ``--jobs N``: of the stages ready to start, the earliest goes
# first. The tower's two stages come before ``text_lm_copy``: after ``text_lm`` they are the longer way to
# ``pre_alignment``, and the vocoders, last, fill the cores the chain leaves idle.
STAGES: dict[str, DemoStage] = {
    "corpus": DemoStage(
        run_corpus,
        "question -> answer text corpus with held-out phrasings and contents",
        needs=(),
    ),
    "text_tokenizer": DemoStage(
        run_text_tokenizer,
        "byte-level BPE on the corpus and prompts, as a processor folder",
        needs=("corpus",),
        products=("*.json", "*.jinja"),
    ),
    "text_lm": DemoStage(
        run_text_lm,
        "the text LLM trained on the question-answering pairs (the Qwen3 stand-in)",
        needs=("corpus", "text_tokenizer"),
        products=("model",),
    ),
    "speech": DemoStage(
        run_speech,
        "questions and answers spoken by espeak-ng (training and held-out voices)",
        needs=("corpus",),
    ),
    "practice_speech": DemoStage(
        run_practice_speech,
        "practice questions (new wordings of training contents) spoken in the training voices",
        needs=(),
    ),
    "speech_tokenizer": DemoStage(
        run_speech_tokenizer,
        "speech tokenizer trained on the spoken corpus; answers re-coded with it",
        needs=("speech",),
        products=("speech_tokenizer.safetensors",),
    ),
    "audio_encoder": DemoStage(
        run_audio_encoder,
        "the continuous audio tower trained alone with CTC (the stand-in for Whisper)",
        needs=("corpus", "speech", "text_tokenizer", "text_lm"),
        products=("audio_encoder.safetensors",),
        # its own token table: it trains beside the text LLM
        skipped_needs=lambda s: ("text_lm",) if s.tower_token_table == "learnt" else ("text_tokenizer",),
    ),
    "tower_match": DemoStage(
        run_tower_match,
        "the tower's 5 Hz groups pulled onto the text LLM's embeddings of the words they hold",
        needs=("audio_encoder", "text_lm"),
        products=("audio_encoder.safetensors",),
    ),
    "text_lm_copy": DemoStage(
        run_text_lm_copy,
        "the text LLM continued with copy pairs (input embeddings frozen): it copies any sentence",
        needs=("corpus", "text_lm"),
        products=("model",),
    ),
    "conversations": DemoStage(
        run_conversations,
        "training conversations: S2S answers, S2T transcripts and calls",
        needs=("corpus", "speech_tokenizer", "text_tokenizer", "practice_speech"),
    ),
    "pre_alignment": DemoStage(
        run_pre_alignment,
        "the listening path, then the SRH, learn with the text LLM frozen",
        needs=("corpus", "text_lm_copy", "text_tokenizer", "conversations", "tower_match"),
        products=("run/model",),
    ),
    "core_cocktail": DemoStage(
        run_core_cocktail,
        "the whole model fine-tuned: stage 1, merge with the text LLM, stage 2",
        needs=("pre_alignment", "text_tokenizer", "conversations"),
        products=("run/model",),
    ),
    "dpo": DemoStage(
        run_dpo,
        "multi-task DPO: right answers over wrong, truncated and garbled ones",
        needs=("core_cocktail", "text_tokenizer", "conversations"),
        products=("run/model", "polish/model"),
    ),
    "vocoder_hift": DemoStage(
        run_vocoder_hift,
        "HiFT (mel -> 24 kHz) trained on the assistant's voice",
        needs=("speech",),
        products=("hift.safetensors",),
    ),
    "vocoder_flow": DemoStage(
        run_vocoder_flow,
        "flow matching (speech codes -> mel) trained on the assistant's voice",
        needs=("speech", "speech_tokenizer"),
        products=("flow.safetensors",),
    ),
    "package": DemoStage(
        run_package,
        "the parts joined into one pipeline folder with a model card",
        needs=("dpo", "text_tokenizer", "vocoder_flow", "vocoder_hift", "speech_tokenizer", "conversations"),
    ),
}


def settings_with(settings: DemoSettings, assignments: Sequence[str]) -> DemoSettings:
    """``settings`` with ``NAME=VALUE`` assignments applied, each value parsed as the field's type.

    Raises:
        ValueError: an assignment without "=", an unknown field, or a value that does not parse."""
    fields = {f.name: f for f in dataclasses.fields(DemoSettings)}
    changes: dict[str, Any] = {}
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        if not sep or name not in fields:
            raise ValueError(f"--set {assignment!r}: give NAME=VALUE with NAME one of {sorted(fields)}")
        current = getattr(settings, name)
        try:
            if text.lower() == "none":
                changes[name] = None
            elif isinstance(current, bool):
                changes[name] = {"true": True, "false": False}[text.lower()]
            elif isinstance(current, int) or (current is None and text.lstrip("-").isdigit()):
                changes[name] = int(text)
            elif isinstance(current, float):
                changes[name] = float(text)
            else:
                changes[name] = text
        except (KeyError, ValueError) as error:
            raise ValueError(f"--set {assignment!r}: {text!r} is not a {type(current).__name__}") from error
    return dataclasses.replace(settings, **changes)


def settings_assignments(settings: DemoSettings) -> list[str]:
    """The ``NAME=VALUE`` assignments that make ``settings`` of ``DemoSettings()`` (``settings_with``'s
    inverse: one per field that differs).

    Raises:
        ValueError: a value that ``settings_with`` would not read back (a text field holding "none")."""
    default = DemoSettings()
    assignments = [
        f"{f.name}={getattr(settings, f.name)}"
        for f in dataclasses.fields(DemoSettings)
        if getattr(settings, f.name) != getattr(default, f.name)
    ]
    if settings_with(default, assignments) != settings:
        raise ValueError(f"the settings {assignments} do not read back as {settings}")
    return assignments


def main(
    argv: Sequence[str] | None = None,
    stages: dict[str, DemoStage] = STAGES,
    stage_command: Sequence[str] = STAGE_COMMAND,
) -> int:
    """``tools/train_demo.py``'s command line; ``stages`` and ``stage_command`` (the recipe and the argv
    prefix that runs it in a new process, see ``DemoBuild``) are there for tests to give their own."""

    def at_least_one(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"give a whole number of stages >= 1, not {text!r}")
        return int(text)

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (default runs/demo)")
    parser.add_argument("--stage", action="append", help=f"run only this stage (repeatable): {list(stages)}")
    parser.add_argument("--force", action="store_true", help="redo stages that are done")
    parser.add_argument(
        "--jobs",
        type=at_least_one,
        default=1,
        metavar="N",
        help="run up to N stages at once, each in its own process once its inputs are done, their logs in "
        "OUT/logs/<stage>.log (default 1: one after the other, each in its own process, output here)",
    )
    parser.add_argument("--seed", type=int, default=DemoSettings.seed)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change one DemoSettings field (repeatable), e.g. --set cocktail_alpha=1.0 (an ablation)",
    )
    parser.add_argument(
        "--save-products",
        type=Path,
        metavar="DIR",
        help="copy the trained products and stage.json of every finished stage to DIR/<stage>/ and exit "
        "(runs nothing): what a later session restores",
    )
    parser.add_argument(
        "--restore-products",
        type=Path,
        metavar="DIR",
        help="before running, copy the products saved in DIR into the stages whose recorded settings "
        "agree with these: they do not train again",
    )
    parser.add_argument(
        "--compare-products",
        type=Path,
        metavar="DIR",
        help="compare the products each finished stage trained with those saved in DIR (weights tensor by "
        "tensor), print a line a stage, write OUT/products_compared.json and exit (runs nothing)",
    )
    parser.add_argument(SCHEDULED_FLAG, action="store_true", help=argparse.SUPPRESS)  # see SCHEDULED_FLAG
    args = parser.parse_args(argv)
    try:
        settings = settings_with(DemoSettings(seed=args.seed), args.set)
    except ValueError as error:
        parser.exit(2, f"train_demo: {error}\n")
    build = DemoBuild(args.out, settings, stages=stages, stage_command=stage_command)
    if args.save_products is not None:
        saved = save_products(build, args.save_products)
        build.log(f"saved the products of {saved} to {args.save_products}")
        return 0
    if args.compare_products is not None:
        return _report_comparison(build, args.compare_products)
    try:
        if args.restore_products is not None:
            for name, outcome in restore_products(build, args.restore_products).items():
                build.log(f"[{name}] {outcome}")
        scheduled = args.scheduled  # a stage a schedule started: its time is on the schedule's clock
        build.run(args.stage, force=args.force, jobs=args.jobs, processes=True, build_clock=not scheduled)
    except ValueError as error:
        parser.exit(2, f"train_demo: {error}\n")
    except StagesFailed as error:
        parser.exit(1, f"train_demo: {error}\n")
    return 0


def _report_comparison(build: DemoBuild, folder: Path) -> int:
    """``--compare-products``: a line a stage, the whole comparison in ``OUT/products_compared.json``."""
    from funaudiochat.base.atomic import atomic_write_text

    compared = compare_products(build, folder)
    for name, stage in compared.items():
        weights = [f for f in stage["files"].values() if "relative_l2" in f]
        worst = max((f["relative_l2"] for f in weights), default=0.0)
        differ = sum(not f["same"] for f in stage["files"].values())
        detail = f", weights' relative L2 difference up to {worst:.3g}" if weights else ""
        build.log(f"[{name}] {stage['verdict']}: {differ} of {len(stage['files'])} files differ{detail}")
    if not compared:
        build.log(f"no stage trained in {build.root} is saved in {folder}")
    report = {"saved": str(Path(folder).resolve()), "stages": compared}
    atomic_write_text(build.root / "products_compared.json", json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":  # how ``STAGE_COMMAND`` runs a stage in its own process
    sys.exit(main())
