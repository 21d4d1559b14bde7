"""The last stage of the demo recipe: the trained parts joined into one pipeline folder (``package/``).

The folder is what ``funaudiochat.chat.Pipeline.from_pretrained`` loads (``chat.loaders``): the DPO model
(its ``generation_config.json`` with ``plan_speech``), the processor, the flow and HiFT, a speaker table of
one speaker (``assistant``: the pseudo x-vector the vocoder stages trained with), the speech tokenizer,
and a model card (``README.md``) with the data, the sizes, the recipe and the seconds of each stage;
``tools/eval_spoken_qa.py`` adds its tables to the card.
With ``speech_timing`` the folder also holds ``speech_timing.json`` (``funaudiochat.drsr.speech_timing``,
fitted on the training replies' word-aligned texts): a planned spoken reply's words are then said at the
slots it gives. The model and the flow are stored in float16 (``store_half``: the loaders build float32
modules and cast on load; replies are unchanged on the demo model's bundled questions), the whole folder
checked against ``MAX_PACKAGE_BYTES``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .context import DemoSettings, StageContext

MAX_PACKAGE_BYTES = 40 * 1024 * 1024


def store_half(path: Path) -> None:
    """Rewrite a safetensors file with its float32 tensors as float16 (metadata kept), atomically."""
    import torch
    from funaudiochat.base.weights import read_safetensors, write_safetensors

    tensors, metadata = read_safetensors(path)
    halved = {k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}
    write_safetensors(path, halved, metadata=metadata)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


@dataclass
class Parts:
    """The trained parts of a pipeline folder (the fields of ``funaudiochat.chat.loaders.Parts``)."""

    model: Any
    processor: Any
    vocoder: Any
    speech_tokenizer: Any
    speech_timing: Any = None


def write_pipeline_folder(parts: Parts, out: Path, card: str) -> None:
    """The pipeline folder ``funaudiochat.chat`` loads (file names as ``chat.loaders`` reads them; training
    sits below chat in the package layering, so it writes them itself), written at once."""
    from funaudiochat.base.atomic import atomic_folder
    from funaudiochat.vocoder.loading import save_flow, save_hift

    with atomic_folder(out) as staging:
        parts.model.save_pretrained(staging)
        parts.processor.save_pretrained(staging)
        save_flow(parts.vocoder.flow, staging / "flow.safetensors")
        save_hift(parts.vocoder.hift, staging / "hift.safetensors")
        parts.vocoder.speakers.save(staging / "spk2info.safetensors")
        parts.speech_tokenizer.save_safetensors(staging / "speech_tokenizer_v3.safetensors")
        (staging / "README.md").write_text(card, encoding="utf-8")
        if parts.speech_timing is not None:
            parts.speech_timing.save(staging)
        for name in ("model.safetensors", "flow.safetensors"):
            store_half(staging / name)


def run_package(build: StageContext) -> dict[str, Any]:
    import torch
    from funaudiochat.drsr import FunAudioChatForConditionalGeneration
    from funaudiochat.drsr.processing import FunAudioChatProcessor
    from funaudiochat.tokenizer import SpeechTokenizer
    from funaudiochat.vocoder.loading import load_flow, load_hift
    from funaudiochat.vocoder.speakers import Speaker, SpeakerTable
    from funaudiochat.vocoder.token2wav import Token2Wav

    from ..vocoder.data import pseudo_speaker_embedding
    from .finetune_stages import final_model
    from .vocoder_stages import ASSISTANT_SPEAKER

    model_folder = final_model(build.require("dpo", "package"))
    processor = FunAudioChatProcessor.from_pretrained(
        build.require("text_tokenizer", "package"), group_size=build.settings.group_size
    )
    flow = load_flow(build.require("vocoder_flow", "package") / "flow.safetensors")
    flow.config.n_timesteps = build.settings.flow_inference_steps  # kept in flow.safetensors' config
    hift = load_hift(build.require("vocoder_hift", "package") / "hift.safetensors")
    tokenizer_path = build.require("speech_tokenizer", "package") / "speech_tokenizer.safetensors"
    model = FunAudioChatForConditionalGeneration.from_pretrained(str(model_folder)).to(torch.float32).eval()
    model.generation_config.plan_speech = build.settings.plan_speech  # the pipeline's decoding default
    timing = None
    if build.settings.speech_timing and build.settings.reply_alignment == "words":
        timing = fit_speech_timing(build.require("conversations", "package") / "train.jsonl", processor)
    speakers = SpeakerTable({ASSISTANT_SPEAKER: Speaker(pseudo_speaker_embedding(ASSISTANT_SPEAKER, 0))})
    parts = Parts(
        model=model,
        processor=processor,
        vocoder=Token2Wav(flow.eval(), hift.eval(), speakers),
        speech_tokenizer=SpeechTokenizer.from_safetensors(tokenizer_path).eval(),
        speech_timing=timing,
    )
    out = build.folder("package")
    write_pipeline_folder(parts, out, model_card(build, parts))
    size = folder_bytes(out)
    if size > MAX_PACKAGE_BYTES:
        raise ValueError(
            f"{out}: the pipeline folder holds {size / 2**20:.1f} MiB; the demo ships at most "
            f"{MAX_PACKAGE_BYTES / 2**20:.0f} MiB (shrink the sizes in model_stages / vocoder_stages)"
        )
    return {"bytes": size, "parameters": parameter_counts(parts)}


def fit_speech_timing(conversations: Path, processor):
    """``SpeechTiming.fit`` on the aligned texts of the spoken replies of a sharegpt file (the training
    conversations)."""
    from funaudiochat.drsr.speech_timing import SpeechTiming

    from ..data import read_sharegpt

    replies = [a.text for c in read_sharegpt(conversations, check_audio=False) for a in c.assistant_speech]
    return SpeechTiming.fit(replies, processor.tokenizer)


def parameter_counts(parts) -> dict[str, int]:
    """Parameters of each part, by name."""
    model = parts.model

    def count(module) -> int:
        return sum(p.numel() for p in module.parameters())

    counts = {"model": count(model), "language_model": count(model.language_model)}
    counts.update(flow=count(parts.vocoder.flow), hift=count(parts.vocoder.hift))
    if parts.speech_tokenizer is not None:
        counts["speech_tokenizer"] = count(parts.speech_tokenizer)
    return counts


def trained_seconds(build: StageContext, name: str, seconds: float, record: dict | None = None) -> float:
    """The seconds stage ``name`` took to train: ``seconds`` (this run's), or, for a stage whose products
    were restored from another run (``stage.json``'s ``restored``), the seconds it took there. ``record``:
    the stage's ``stage.json`` when read already."""
    record = build.record(name) if record is None else record
    from .products import recorded_seconds

    return recorded_seconds(record, seconds)


def stage_seconds(build: StageContext, name: str, seconds: float) -> str:
    """A stage's row in the card: ``trained_seconds``, saying whether it was restored and how many
    attempts it took when more than one (``stage_clock``)."""
    record = build.record(name)
    text = f"{trained_seconds(build, name, seconds, record):.0f}"
    if record.get("restored"):
        return f"{text} (trained in an earlier run, restored)"
    attempts = record.get("attempts", 1)
    return f"{text} ({attempts} attempts)" if attempts > 1 else text


def total_row(build: StageContext, timings: dict[str, float]) -> str:
    """The card's last row: every stage's ``trained_seconds`` added up, also in hours."""
    total = sum(trained_seconds(build, name, seconds) for name, seconds in timings.items())
    return f"| total | {total:.0f} ({total / 3600:.2f} h) |\n"


def critical_row(build: StageContext, timings: dict[str, float]) -> str:
    """The card's row of the recipe's longest chain of stages (``schedule.critical_path`` over their
    ``trained_seconds``): the least wall clock any number of jobs can take."""
    from .schedule import critical_path

    seconds = {name: trained_seconds(build, name, s) for name, s in timings.items()}
    longest, chain = critical_path(seconds, {name: build.needs(name) for name in build.stages})
    return f"| critical path ({' -> '.join(chain)}) | {longest:.0f} ({longest / 3600:.2f} h) |\n"


def build_clock_row(build: StageContext) -> str:
    """The card's row of the build's own wall clock so far (``stage_clock.BUILD_CLOCK``: every run of
    ``train_demo.py`` in the folder, pauses left out; stages restored from another run add only their
    check); empty when the folder has none (a build from before 2026-12-07 evening)."""
    from .stage_clock import BUILD_CLOCK, clock_file, read_clock, runs_of_build

    clock = read_clock(clock_file(build.folder("package").parent, BUILD_CLOCK))
    if not clock:
        return ""
    seconds, runs = clock["seconds"], runs_of_build(clock.get("attempts", 1))
    return (
        f"| wall clock of the build up to `package` ({runs} of `train_demo.py`) "
        f"| {seconds:.0f} ({seconds / 3600:.2f} h) |\n"
    )


def other_settings(build: StageContext, names) -> str:
    """The card's lines for the stages of ``names`` that trained with settings other than the run's (a
    restored stage trained in another run, a stage trained before a ``--set`` changed): each stage with
    the fields that differ and the values it read (``products.own_settings``); empty when none did."""
    from .products import own_settings

    current = vars(build.settings)
    lines = []
    for name in names:
        record = build.record(name)
        if not record:
            continue
        own = own_settings(record, name)
        differ = {
            field: value for field, value in own.items() if field in current and value != current[field]
        }
        if differ:
            lines.append(
                f"- `{name}`: " + ", ".join(f"`{f}={json.dumps(v)}`" for f, v in sorted(differ.items()))
            )
    if not lines:
        return ""
    return "\nStages trained with other settings than these:\n" + "\n".join(lines) + "\n"


PLANNED_SPEECH = """ Its spoken replies are planned (`plan_speech` in
`generation_config.json`): the text-only reply is written first and the spoken reply says it, """
PLACED_BY_MODEL = "the model\nplacing each word."
PLACED_BY_TABLE = """each word
at the {rate} step that `speech_timing.json` gives it (how long each word lasts in the training replies)."""


def model_card(build: StageContext, parts) -> str:
    """The card's text: what the model is, its data, sizes and recipe, the seconds of each stage."""
    from .speech_stages import ASSISTANT_SPEED, ASSISTANT_VOICE

    root = build.folder("package").parent
    timings_path = root / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    stats = json.loads((build.folder("corpus") / "stats.json").read_text())
    text = parts.model.config.text_config
    counts = parameter_counts(parts)
    rows = (
        "".join(
            f"| `{name}` | {stage_seconds(build, name, seconds)} |\n" for name, seconds in timings.items()
        )
        + total_row(build, timings)
        + critical_row(build, timings)
        + build_clock_row(build)
    )
    sizes = "".join(f"| {name} | {n / 1e6:.2f} M |\n" for name, n in counts.items())
    settings = {f.name: getattr(build.settings, f.name) for f in dataclasses.fields(DemoSettings)}
    group_size = parts.model.config.audio_config.group_size
    rate = f"{25 / group_size:g} Hz"
    placed = PLACED_BY_TABLE.format(rate=rate) if parts.speech_timing is not None else PLACED_BY_MODEL
    planned = PLANNED_SPEECH + placed if settings["plan_speech"] else ""
    voices = settings["listening_voices"]
    voiced = (
        f"\nThe audio tower and the listening path also hear every training question"
        f" {settings['listening_voice_rounds']} more times in voices drawn from {voices} other espeak-ng"
        " variants of the training accents (never a held-out voice, accent or variant)."
        if voices
        else ""
    )
    return f"""# Fun-Audio-Chat demo model

A small spoken assistant trained on this machine by the project's own recipe (`tools/train_demo.py`), on
speech synthesised with espeak-ng: it answers spoken questions about arithmetic with numbers 0-20,
comparisons, simple facts (colours, animal sounds, opposites, days, months, legs) and short
instructions, in text and speech; transcribes speech (ASR mode); and calls two tools (`set_timer`,
`get_weather`). It is the project's embedded default and the proof that the recipe trains a model that
listens and talks; it knows nothing beyond its closed vocabulary.{planned}

    funaudiochat chat question.wav --out answer.wav        # this folder is the default --model

## Data
{stats["pairs"]} question -> answer pairs generated by code (`make_demo_corpus`), split by phrasing and
content: {", ".join(f"{k} {v}" for k, v in stats["splits"].items())}. Training questions are spoken in
14 espeak-ng voices (twice: clean, and with noise at 20 dB SNR); held-out questions in 5 other voices.
Answers are spoken in one assistant voice ({ASSISTANT_VOICE} at {ASSISTANT_SPEED} words per minute).{voiced}

## Sizes
Shared LLM: Qwen3, hidden {text.hidden_size}, {text.num_hidden_layers} layers, vocabulary {text.vocab_size};
{rate} input and output (group size {group_size}).

| part | parameters |
|---|---|
{sizes}
## Recipe and time per stage (seconds, 2 CPU cores)
| stage | seconds |
|---|---|
{rows}
Settings: `{json.dumps(settings)}`
{other_settings(build, timings)}
## Evaluation
Run `python tools/eval_spoken_qa.py --model <this folder> --run runs/demo`; its table is added here.
"""
