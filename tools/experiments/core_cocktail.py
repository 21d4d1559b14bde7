"""Forgetting experiment: does Core-Cocktail keep a text LM's knowledge through speech training?

    .venv/bin/python tools/experiments/core_cocktail.py [--seeds 0,1,2] [--json out.json]
    .venv/bin/python tools/experiments/core_cocktail.py --quick      # a few steps of everything (smoke run)

A tiny Fun-Audio-Chat model (``tiny_config_for``: LLM width 64, 2 layers; speech vocabulary 6565) on a
byte-level BPE trained on the experiment's text goes through, per seed:

1. **M0, the text LM.** Its LLM is trained on a text-only chat task T, single-digit addition in words
   ("What is three plus four?" -> "Seven.", system prompt ``DEFAULT_S2T_PROMPT``); the speech modules are
   frozen. Of the 100 questions a seeded split of 20 is held out.
2. Optionally (``--prealign-steps``, default 0) **pre-alignment**: the LLM frozen, the encoders, the adapter
   and the SRH learn the speech task; the arms then start from it (its LLM is still M0).
3. **Speech task S**, a different kind of question: spoken colour facts ("What colour is the sky?" ->
   "Blue."), spoken by espeak-ng through ``tools/synth_spoken_data.py`` (official sharegpt data, the
   answer as text + speech codes, system prompt ``DEFAULT_S2M_PROMPT``). From the same start, with the
   same batches in the same order and the same number of steps N:

   (a) plain full fine-tuning (``SpeechLLMModule``), lr ``--high-lr`` on a cosine to 10 %, N steps;
   (b) Core-Cocktail (``CoreCocktailModule``): stage 1 as (a) but over N1 steps, the merge
       ``LLM = alpha * LLM + (1 - alpha) * M0`` (alpha 0.5), stage 2 at ``--low-lr`` for N - N1 steps;
   (c) the same two stages without the merge (alpha 1: only the optimizer restarts), to tell the merge's
       effect from that of the low-lr second stage.

Accuracy is the exact match of the normalised greedy text answer (lower case, punctuation dropped):

- text task: the question as text in a text-only chat (``DEFAULT_S2T_PROMPT``, no speech decoded), on the
  80 trained questions ("text seen") and the 20 held-out ones ("text held-out");
- speech task: the question as speech in S2M mode (``DEFAULT_S2M_PROMPT``, text and speech decoded
  together, both greedy), the text stream read up to its first special token; "speech seen" are the
  training utterances themselves (one voice, the task is tiny), "speech new voice" the same questions
  in a voice and speed never trained on.

Also evaluated: (b) after stage 1 (before the merge) and right after the merge. Everything is seeded
(``--seeds``: one full run each, M0 included; the seed picks the initial weights, the held-out split and
the batch order); the table gives the mean over seeds and, with several seeds, each seed's value.
``--json`` writes every number, the timings and the settings. Torch runs on one thread by default: the
tensors are tiny, and more threads only add synchronisation (much slower on a busy 2-core machine).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[2]

NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen"
).split()

COLOUR_FACTS = (
    ("What colour is the sky?", "Blue."),
    ("What colour is grass?", "Green."),
    ("What colour is snow?", "White."),
    ("What colour is coal?", "Black."),
    ("What colour is a banana?", "Yellow."),
    ("What colour is a tomato?", "Red."),
    ("What colour is chocolate?", "Brown."),
    ("What colour is a flamingo?", "Pink."),
    ("What colour is an orange?", "Orange."),
    ("What colour is a plum?", "Purple."),
    ("What colour is an elephant?", "Grey."),
    ("What colour is a lime?", "Green."),
)

FREEZE_SPEECH = ("continuous_audio_tower", "audio_tower", "audio_invert_tower")

# Table rows: (key, label). Which metrics a row has follows from what was evaluated.
ROWS = (
    ("m0", "M0: text LM"),
    ("prealigned", "pre-aligned (LLM = M0, frozen)"),
    ("plain", "(a) plain fine-tuning"),
    ("cc_stage1", "(b) Core-Cocktail, after stage 1"),
    ("cc_merged", "(b) Core-Cocktail, after the merge"),
    ("cc", "(b) Core-Cocktail, final"),
    ("no_merge", "(c) two stages, no merge"),
)
METRICS = (
    ("text_seen", "text seen"),
    ("text_held_out", "text held-out"),
    ("speech_seen", "speech seen"),
    ("speech_new", "speech new voice"),
)


@dataclass
class Settings:
    """Sizes, steps and learning rates of one run (the defaults are the documented experiment)."""

    text_questions: int = 100  # single-digit additions a + b, a, b in 0..9
    text_held_out: int = 20
    colour_facts: int = 12
    train_renderings: tuple[tuple[str, int], ...] = (("en-us", 160),)
    new_rendering: tuple[str, int] = ("en-gb", 140)
    answer_voice: tuple[str, int] = ("en-us", 170)
    vocab_size: int = 1000
    pretrain_steps: int = 600
    pretrain_lr: float = 3e-3
    pretrain_batch: int = 16
    prealign_steps: int = 0
    prealign_lr: float = 1e-3
    speech_steps: int = 400  # N, for (a), (b) and (c)
    stage1_steps: int = 200  # N1; stage 2 has N - N1
    high_lr: float = 1e-3
    low_lr: float = 1e-4
    alpha: float = 0.5
    speech_batch: int = 8
    min_lr_ratio: float = 0.1

    @classmethod
    def quick(cls) -> Settings:
        """A few steps of everything on a handful of questions: checks the script end to end."""
        return cls(
            text_questions=12,
            text_held_out=4,
            colour_facts=3,
            pretrain_steps=4,
            pretrain_batch=4,
            prealign_steps=2,
            speech_steps=4,
            stage1_steps=2,
            speech_batch=3,
        )


# ------------------------------------------------------------------------------------------------ data


def addition_pairs(count: int) -> list[tuple[str, str]]:
    """The first ``count`` of the 100 single-digit additions, in a fixed shuffled order."""
    pairs = [
        (f"What is {NUMBER_WORDS[a]} plus {NUMBER_WORDS[b]}?", NUMBER_WORDS[a + b].capitalize() + ".")
        for a in range(10)
        for b in range(10)
    ]
    random.Random(1234).shuffle(pairs)
    return pairs[:count]


def normalise(text: str) -> str:
    """Lower case, punctuation removed, single spaces: what exact match compares."""
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())


@dataclass
class SpokenSet:
    """Spoken questions of one rendering (voice, speed): conversations, wavs and answers."""

    name: str
    conversations: list
    wavs: list[str]
    answers: list[str]


def synthesise(facts: Sequence[tuple[str, str]], rendering: tuple[str, int], answer_voice, out: Path):
    """Speak ``facts`` with espeak-ng in one voice and speed (answers in ``answer_voice``), through the
    synth tool, into official sharegpt data; returns a ``SpokenSet``."""
    from funaudiochat.training.data import read_sharegpt
    from funaudiochat.training.data.synth import main as synth_main

    voice, speed = rendering
    out.mkdir(parents=True, exist_ok=True)
    pairs = out / "pairs.tsv"
    pairs.write_text("".join(f"{q}\t{a}\n" for q, a in facts))
    argv = [str(pairs), "--out", str(out), "--voices", voice, "--speeds", str(speed)]
    argv += ["--answer-voice", answer_voice[0], "--answer-speed", str(answer_voice[1])]
    argv += ["--format", "sharegpt", "--seed", "0"]
    with contextlib.redirect_stderr(io.StringIO()):
        if synth_main(argv) != 0:
            raise SystemExit(f"synth_spoken_data failed for {rendering}")
    conversations = read_sharegpt(out / "train.jsonl")
    wavs = [c.user_audios[0].path for c in conversations]
    answers = [c.assistant_speech[0].text for c in conversations]
    return SpokenSet(f"{voice}@{speed}", conversations, wavs, answers)


def text_conversation(question: str, answer: str):
    from funaudiochat.drsr.prompts import DEFAULT_S2T_PROMPT
    from funaudiochat.training.data import Conversation, Turn

    turns = [Turn("user", question), Turn("assistant", answer)]
    return Conversation(turns=turns, audios=[], system=DEFAULT_S2T_PROMPT, source=question)


def make_processor(settings: Settings, text: Sequence[tuple[str, str]], spoken: Sequence[tuple[str, str]]):
    """A ``FunAudioChatProcessor`` on a byte-level BPE trained on every question, answer and prompt."""
    from funaudiochat.drsr.processing import FunAudioChatProcessor
    from funaudiochat.drsr.prompts import DEFAULT_S2M_PROMPT, DEFAULT_S2T_PROMPT
    from funaudiochat.drsr.text_tokenizer import train_text_tokenizer

    corpus = [f"{q} {a}" for q, a in [*text, *spoken]] + [DEFAULT_S2T_PROMPT, DEFAULT_S2M_PROMPT]
    corpus.append("system user assistant")  # the roles of the chat template: one token each
    tokenizer = train_text_tokenizer(corpus * 3, vocab_size=settings.vocab_size)
    return FunAudioChatProcessor(tokenizer, padding_side="right")


# ------------------------------------------------------------------------------------------- training


class Snapshot(L.Callback):
    """Keeps a CPU copy of the model's state right before optimizer step ``step``: for Core-Cocktail,
    the model after stage 1 (the merge runs in the module's own hook, which Lightning calls after the
    callbacks')."""

    def __init__(self, step: int):
        self.step = step
        self.state: dict[str, torch.Tensor] | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step and self.state is None:
            self.state = {k: v.detach().cpu().clone() for k, v in pl_module.model.state_dict().items()}


def loader(items, batch_size: int, seed: int, collate):
    """Shuffled batches of the pre-encoded ``items``, the same order for every arm of a seed."""
    from torch.utils.data import DataLoader

    generator = torch.Generator().manual_seed(seed)
    return DataLoader(items, batch_size=batch_size, shuffle=True, generator=generator, collate_fn=collate)


def fit(module, batches, steps: int, seed: int, callbacks=()) -> None:
    """``steps`` optimizer steps of ``module`` on ``batches`` (Lightning, CPU, quiet)."""
    L.seed_everything(seed, workers=False, verbose=False)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
        callbacks=list(callbacks),
        num_sanity_val_steps=0,
    )
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        trainer.fit(module, train_dataloaders=batches)
    if trainer.global_step != steps:
        raise RuntimeError(f"trained {trainer.global_step} steps, wanted {steps}")


# ----------------------------------------------------------------------------------------- evaluation


def _answer_text(processor, ids: Sequence[int], skip_first: bool) -> str:
    """Decode generated ids up to the first special token (``<|sil|>``, ``<|audio_eos|>``, ``<|im_end|>``
    ...); ``skip_first`` drops the forced ``<|audio_bos|>`` of S2M decoding."""
    special = set(processor.tokenizer.added_tokens_decoder)
    ids = list(ids)[1:] if skip_first else list(ids)
    cut = next((i for i, t in enumerate(ids) if t in special), len(ids))
    return processor.tokenizer.decode(ids[:cut])


@torch.no_grad()
def text_accuracy(model, processor, pairs: Sequence[tuple[str, str]], batch: int = 64) -> float:
    """Exact match of greedy answers to text questions in text-only chat (no speech output)."""
    from funaudiochat.drsr.generation import DecodingConfig, generate
    from funaudiochat.drsr.prompts import DEFAULT_S2T_PROMPT

    if not pairs:
        return float("nan")
    config = DecodingConfig(max_new_tokens=8, force_text_abos=False, disable_speech=True)
    correct = 0
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        prompts = [
            processor.apply_chat_template([{"role": "user", "content": q}], system_prompt=DEFAULT_S2T_PROMPT)
            for q, _ in chunk
        ]
        inputs = dict(processor(prompts, padding_side="left"))
        out = generate(model, inputs, config)
        for row, (_, answer) in zip(out.sequences[:, out.prompt_length :].tolist(), chunk, strict=True):
            correct += normalise(_answer_text(processor, row, skip_first=False)) == normalise(answer)
    return correct / len(pairs)


@torch.no_grad()
def speech_accuracy(model, processor, spoken: SpokenSet, batch: int = 32) -> float:
    """Exact match of the greedy text stream to spoken questions in S2M mode (text + speech decoded)."""
    from funaudiochat.drsr.generation import DecodingConfig, SamplingConfig, generate
    from funaudiochat.drsr.prompts import DEFAULT_S2M_PROMPT

    greedy = SamplingConfig(do_sample=False, repetition_penalty=1.0)
    config = DecodingConfig(max_new_tokens=6, speech=greedy, force_text_abos=True)
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "audio"}]}], system_prompt=DEFAULT_S2M_PROMPT
    )
    correct = 0
    for start in range(0, len(spoken.wavs), batch):
        wavs, answers = spoken.wavs[start : start + batch], spoken.answers[start : start + batch]
        inputs = dict(processor([prompt] * len(wavs), audio=wavs, padding_side="left"))
        out = generate(model, inputs, config)
        for row, answer in zip(out.sequences[:, out.prompt_length :].tolist(), answers, strict=True):
            correct += normalise(_answer_text(processor, row, skip_first=True)) == normalise(answer)
    return correct / len(spoken.wavs)


@dataclass
class EvalSets:
    text_seen: list[tuple[str, str]]
    text_held_out: list[tuple[str, str]]
    speech_seen: list[SpokenSet]
    speech_new: SpokenSet


def evaluate(model, processor, sets: EvalSets, speech: bool = True) -> dict[str, float]:
    was_training = model.training
    model.eval()
    try:
        result = {
            "text_seen": text_accuracy(model, processor, sets.text_seen),
            "text_held_out": text_accuracy(model, processor, sets.text_held_out),
        }
        if speech:
            seen = [speech_accuracy(model, processor, s) * len(s.wavs) for s in sets.speech_seen]
            result["speech_seen"] = sum(seen) / sum(len(s.wavs) for s in sets.speech_seen)
            result["speech_new"] = speech_accuracy(model, processor, sets.speech_new)
    finally:
        model.train(was_training)
    return result


def model_from_state(directory: Path, state: dict[str, torch.Tensor]):
    from funaudiochat.drsr import FunAudioChatForConditionalGeneration

    model = FunAudioChatForConditionalGeneration.from_pretrained(directory)
    model.load_state_dict(state)
    return model


# ------------------------------------------------------------------------------------------------ run


def run_seed(seed: int, settings: Settings, work: Path, log: Callable[[str], None]) -> dict:
    """One full run (data, M0, pre-alignment, the three arms) with ``seed``; returns metrics per row."""
    from funaudiochat.drsr import FunAudioChatForConditionalGeneration
    from funaudiochat.training.data import Collator, ConversationEncoder
    from funaudiochat.training.llm.core_cocktail import CoreCocktailModule
    from funaudiochat.training.llm.module import SpeechLLMModule, tiny_config_for
    from funaudiochat.training.merge import average

    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 1)
        clock = now
        log(f"seed {seed}: {name} done in {timings[name]:.1f} s")

    # data
    pairs = addition_pairs(settings.text_questions)
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    held = set(order[: settings.text_held_out])
    text_train = [p for i, p in enumerate(pairs) if i not in held]
    text_held = [p for i, p in enumerate(pairs) if i in held]
    facts = list(COLOUR_FACTS[: settings.colour_facts])
    seen = [
        synthesise(facts, r, settings.answer_voice, work / f"speech_{r[0]}_{r[1]}")
        for r in settings.train_renderings
    ]
    new_dir = work / f"speech_{settings.new_rendering[0]}_{settings.new_rendering[1]}"
    new = synthesise(facts, settings.new_rendering, settings.answer_voice, new_dir)
    sets = EvalSets(text_train, text_held, seen, new)

    processor = make_processor(settings, pairs, facts)
    encoder = ConversationEncoder(processor)
    collate = Collator.for_processor(processor)
    text_items = [encoder.encode(text_conversation(q, a)) for q, a in text_train]
    speech_items = [encoder.encode(c) for s in seen for c in s.conversations]
    lap("data")

    # M0: the LLM learns the text task; the speech modules are frozen
    init = work / "init"
    processor.save_pretrained(init)
    torch.manual_seed(seed)
    FunAudioChatForConditionalGeneration(tiny_config_for(processor)).save_pretrained(init)
    module = SpeechLLMModule(
        model=str(init),
        freeze=FREEZE_SPEECH,
        lr=settings.pretrain_lr,
        warmup_steps=min(20, settings.pretrain_steps // 10),
        total_steps=settings.pretrain_steps,
        min_lr_ratio=settings.min_lr_ratio,
    )
    fit(module, loader(text_items, settings.pretrain_batch, seed, collate), settings.pretrain_steps, seed)
    m0 = work / "m0"
    module.model.save_pretrained(m0)
    results = {"m0": evaluate(module.model, processor, sets)}
    lap("M0")

    # pre-alignment: the LLM stays M0
    start = m0
    if settings.prealign_steps > 0:
        module = SpeechLLMModule(
            model=str(m0),
            freeze=("language_model",),
            lr=settings.prealign_lr,
            total_steps=settings.prealign_steps,
            min_lr_ratio=settings.min_lr_ratio,
        )
        batches = loader(speech_items, settings.speech_batch, seed, collate)
        fit(module, batches, settings.prealign_steps, seed)
        start = work / "prealigned"
        module.model.save_pretrained(start)
        results["prealigned"] = evaluate(module.model, processor, sets)
        lap("pre-alignment")

    n, n1 = settings.speech_steps, settings.stage1_steps

    # (a) plain fine-tuning
    module = SpeechLLMModule(
        model=str(start), lr=settings.high_lr, total_steps=n, min_lr_ratio=settings.min_lr_ratio
    )
    fit(module, loader(speech_items, settings.speech_batch, seed + 1, collate), n, seed)
    results["plain"] = evaluate(module.model, processor, sets)
    lap("(a) plain")

    # (b) Core-Cocktail, and (c) the same without the merge
    for key, alpha in (("cc", settings.alpha), ("no_merge", 1.0)):
        module = CoreCocktailModule(
            model=str(start),
            stage1_steps=n1,
            stage2_steps=n - n1,
            stage1_lr=settings.high_lr,
            stage2_lr=settings.low_lr,
            min_lr_ratio=settings.min_lr_ratio,
            alpha=alpha,
        )
        snapshot = Snapshot(n1)
        fit(module, loader(speech_items, settings.speech_batch, seed + 1, collate), n, seed, [snapshot])
        if not module.merged:
            raise RuntimeError("Core-Cocktail did not merge")
        results[key] = evaluate(module.model, processor, sets)
        if key == "cc":
            stage1 = model_from_state(start, snapshot.state)
            results["cc_stage1"] = evaluate(stage1, processor, sets)
            m0_llm = FunAudioChatForConditionalGeneration.from_pretrained(m0).language_model.state_dict()
            with torch.no_grad():  # the merge CoreCocktailModule.merge_llm does, on the stage-1 copy
                for name, param in stage1.language_model.state_dict().items():
                    param.copy_(average(param, m0_llm[name], alpha, name)[0])
            results["cc_merged"] = evaluate(stage1, processor, sets)
        lap(f"({'b' if key == 'cc' else 'c'}) {key}")
    return {"rows": results, "timings_s": timings}


# ---------------------------------------------------------------------------------------------- report


def table(per_seed: Sequence[dict]) -> str:
    """A Markdown table: one line per row of ``ROWS``, mean accuracy (%) per metric; with several seeds
    each seed's value follows in brackets."""
    header = "| model | " + " | ".join(label for _, label in METRICS) + " |"
    lines = [header, "|---|" + "---:|" * len(METRICS)]
    for key, label in ROWS:
        if not any(key in run["rows"] for run in per_seed):
            continue
        cells = []
        for metric, _ in METRICS:
            values = [run["rows"][key].get(metric) for run in per_seed if key in run["rows"]]
            values = [v for v in values if v is not None]
            if not values:
                cells.append("–")
                continue
            cell = f"{100 * sum(values) / len(values):.0f}"
            if len(values) > 1:
                cell += " (" + " / ".join(f"{100 * v:.0f}" for v in values) + ")"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, one full run each")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and a few steps: a smoke run")
    parser.add_argument("--json", type=Path, help="write the results and settings to this JSON file")
    parser.add_argument("--work", type=Path, help="keep the data and checkpoints here (default: a temp dir)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: the tensors are tiny)"
    )
    for name, value in asdict(Settings()).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            flag = "--" + name.replace("_", "-")
            parser.add_argument(flag, type=type(value), help=f"default {value} (quick: see Settings.quick)")
    args = parser.parse_args(argv)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if not args.seeds:
        parser.error("--seeds needs at least one seed")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings.quick() if args.quick else Settings()
    chosen = {k: getattr(args, k) for k in asdict(settings) if getattr(args, k, None) is not None}
    settings = replace(settings, **chosen)
    if not 1 <= settings.stage1_steps < settings.speech_steps:
        raise SystemExit(f"--stage1-steps must lie in [1, --speech-steps), got {settings.stage1_steps}")
    if not 0 <= settings.text_held_out < settings.text_questions <= 100:
        raise SystemExit("need 0 <= --text-held-out < --text-questions <= 100")
    if not 1 <= settings.colour_facts <= len(COLOUR_FACTS):
        raise SystemExit(f"--colour-facts must lie in [1, {len(COLOUR_FACTS)}]")
    return settings


@contextlib.contextmanager
def quiet(threads: int):
    """Torch on ``threads`` threads, no Lightning banners and no weight-loading progress bars; all put
    back as they were afterwards (the smoke test runs ``main`` inside pytest)."""
    import logging

    from transformers.utils import logging as hf_logging

    names = ("lightning.pytorch", "lightning.fabric", "lightning")
    levels = {name: logging.getLogger(name).level for name in names}
    verbosity, bars, previous_threads = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled(), None
    try:
        for name in names:
            logging.getLogger(name).setLevel(logging.ERROR)
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        yield
    finally:
        if previous_threads is not None:
            torch.set_num_threads(previous_threads)
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def log(message: str) -> None:
    print(f"core_cocktail: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    began = time.perf_counter()
    per_seed = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(quiet(args.threads))
        root = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="core_cocktail_")))
        for seed in args.seeds:
            run = run_seed(seed, settings, Path(root) / f"seed{seed}", log)
            per_seed.append({"seed": seed, **run})
    runtime = time.perf_counter() - began
    text = table(per_seed)
    print(text)
    mode = "quick" if args.quick else "full"
    print(f"\nseeds {args.seeds}, {runtime:.0f} s in all ({mode} settings, {args.threads} torch thread(s))")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "command": "tools/experiments/core_cocktail.py "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "settings": asdict(settings),
            "quick": args.quick,
            "seeds": args.seeds,
            "runtime_s": round(runtime, 1),
            "torch_threads": args.threads,
            "cpu_count": os.cpu_count(),
            "runs": per_seed,
            "table": text,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
