"""The one place where a pipeline's parts are built: from a folder, into a folder, or seeded and random
(``Pipeline.from_pretrained`` / ``save_pretrained`` / ``random`` call these).

A pipeline folder (file names follow the official release where it has one)::

    config.json, model*.safetensors    the dual-resolution model, official layout (vLLM reads these too)
    generation_config.json             decoding defaults (optional; ``plan_speech``: see ``Pipeline``)
    tokenizer.json, tokenizer_config.json, ..., processor_config.json
                                       the text tokenizer and the processor settings
    flow.safetensors, hift.safetensors the vocoder (CosyVoice3 layouts; sizes in the metadata)
    spk2info.safetensors               the speaker table (optional: a zero speaker otherwise)
    speech_tokenizer_v3.safetensors    the speech tokenizer (optional: needed for voice clips)
    speech_timing.json                 where a planned spoken reply's words are said (optional;
                                       ``speech_timing``: the demo model's)
    README.md                          the model card

A missing or malformed file is refused with its name and what was expected. ``save_parts`` writes the
folder beside the target and renames it into place, so a reader never sees half a folder.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from funaudiochat.base.atomic import atomic_folder
from funaudiochat.base.rng import seeded
from funaudiochat.drsr import FunAudioChatForConditionalGeneration
from funaudiochat.drsr.configuration import tiny_config_for
from funaudiochat.drsr.processing import FunAudioChatProcessor
from funaudiochat.drsr.prompts import ASR_INSTRUCTION, DEFAULT_S2M_PROMPT, DEFAULT_S2T_PROMPT
from funaudiochat.drsr.speech_timing import SpeechTiming
from funaudiochat.drsr.text_tokenizer import train_text_tokenizer
from funaudiochat.tokenizer import SpeechTokenizer
from funaudiochat.vocoder.loading import load_flow, load_hift, save_flow, save_hift
from funaudiochat.vocoder.speakers import SpeakerTable
from funaudiochat.vocoder.token2wav import Token2Wav

CONFIG = "config.json"
GENERATION_CONFIG = "generation_config.json"
FLOW = "flow.safetensors"
HIFT = "hift.safetensors"
SPEAKERS = "spk2info.safetensors"
SPEECH_TOKENIZER = "speech_tokenizer_v3.safetensors"
MODEL_CARD = "README.md"
# the shipped demo model (issue 12; ``tools/train_demo.py`` makes it): the default pipeline folder
DEMO_MODEL = Path(__file__).resolve().parent / "demo_model"
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")  # with tokenizer_config.json


@dataclass
class Parts:
    """What a pipeline is made of (``Pipeline(**vars(parts))``)."""

    model: FunAudioChatForConditionalGeneration
    processor: FunAudioChatProcessor
    vocoder: Token2Wav
    speech_tokenizer: SpeechTokenizer | None = None
    speech_timing: SpeechTiming | None = None


def load_parts(folder: str | os.PathLike) -> Parts:
    """A pipeline's parts from a pipeline folder (see the module docstring)."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{root}: pipeline folder not found")
    check_folder(root)
    try:
        with quiet_loading():
            model = FunAudioChatForConditionalGeneration.from_pretrained(str(root))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{root}: the model (config.json + *.safetensors) cannot be loaded: {err}") from err
    model.generation_config.plan_speech = read_plan_speech(root / GENERATION_CONFIG)
    processor = FunAudioChatProcessor.from_pretrained(root)
    speakers = SpeakerTable.load(root / SPEAKERS) if (root / SPEAKERS).is_file() else None
    vocoder = Token2Wav(load_flow(root / FLOW), load_hift(root / HIFT), speakers)
    tokenizer = None
    if (root / SPEECH_TOKENIZER).is_file():
        tokenizer = SpeechTokenizer.from_safetensors(root / SPEECH_TOKENIZER).eval()
    return Parts(model, processor, vocoder, tokenizer, SpeechTiming.load(root))


@contextmanager
def quiet_loading():
    """Hide transformers' per-file "Loading weights" progress bar (a pipeline loads in well under a second;
    the bar would be the first thing a `funaudiochat chat` user sees), restoring its setting after."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def read_plan_speech(path: Path) -> bool:
    """``plan_speech`` of a folder's ``generation_config.json`` (False when the file or the key is absent;
    transformers' own loading drops keys it does not know)."""
    if not path.is_file():
        return False
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("plan_speech", False)
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise ValueError(f"{path}: not a JSON object ({err})") from err
    if not isinstance(value, bool):
        raise ValueError(f"{path}: plan_speech must be true or false, got {value!r}")
    return value


def demo_model_folder() -> Path | None:
    """The shipped demo model's folder, or None when this copy of the package has none."""
    return DEMO_MODEL if (DEMO_MODEL / CONFIG).is_file() else None


def check_folder(root: Path) -> None:
    """Every file a pipeline needs is there and the model config is the right kind: else a ``ValueError``
    naming the file and what was expected."""
    check_model_config(root / CONFIG, "a pipeline folder")
    if not list(root.glob("*.safetensors")) or not any(
        p.name.startswith("model") for p in root.glob("*.safetensors")
    ):
        raise ValueError(f"{root}: no model*.safetensors weights next to config.json")
    check_tokenizer_files(root)
    for name, what in ((FLOW, "the vocoder's flow"), (HIFT, "the vocoder's HiFT")):
        if not (root / name).is_file():
            raise ValueError(f"{root / name}: missing; a pipeline folder holds {what} weights")


def check_model_config(config_path: Path, holder: str) -> dict:
    """The model's ``config.json`` (``holder``: which folder, for the message), read and checked to be a
    Fun-Audio-Chat config."""
    if not config_path.is_file():
        raise ValueError(f"{config_path}: missing; {holder} holds the model's config.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{config_path}: not valid JSON ({err})") from err
    if not isinstance(config, dict) or config.get("model_type") != "funaudiochat":
        found = config.get("model_type") if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{config_path}: model_type must be 'funaudiochat', got {found!r}")
    return config


def check_tokenizer_files(root: Path) -> None:
    """The text tokenizer's files: ``tokenizer_config.json`` and ``tokenizer.json`` (or ``vocab.json``)."""
    if not (root / "tokenizer_config.json").is_file() or not any(
        (root / n).is_file() for n in TOKENIZER_FILES
    ):
        raise ValueError(
            f"{root}: the text tokenizer's files are missing (tokenizer_config.json and tokenizer.json or "
            "vocab.json)"
        )


def save_parts(pipe: Parts, folder: str | os.PathLike, card: str | None = None) -> Path:
    """Write ``pipe``'s parts (a ``Parts`` or a ``Pipeline``) as a pipeline folder at ``folder`` (replacing it
    when it exists); ``card`` is the model card's text (default: what the folder holds)."""
    target = Path(folder)
    with atomic_folder(target) as staging:
        pipe.model.save_pretrained(staging)
        pipe.processor.save_pretrained(staging)
        save_flow(pipe.vocoder.flow, staging / FLOW)
        save_hift(pipe.vocoder.hift, staging / HIFT)
        if len(pipe.vocoder.speakers):
            pipe.vocoder.speakers.save(staging / SPEAKERS)
        if pipe.speech_tokenizer is not None:
            pipe.speech_tokenizer.save_safetensors(staging / SPEECH_TOKENIZER)
        if pipe.speech_timing is not None:
            pipe.speech_timing.save(staging)
        (staging / MODEL_CARD).write_text(card or _default_card(pipe), encoding="utf-8")
    return target


def _default_card(pipe: Parts) -> str:
    text = pipe.model.config.text_config
    return (
        "# Fun-Audio-Chat pipeline\n\n"
        "Load with `funaudiochat.chat.Pipeline.from_pretrained(folder)` or "
        "`funaudiochat chat question.wav --model folder --out answer.wav`.\n\n"
        f"- shared LLM: {text.model_type}, hidden {text.hidden_size}, {text.num_hidden_layers} layers, "
        f"vocabulary {text.vocab_size}\n"
        f"- speakers: {', '.join(pipe.vocoder.speakers.names) or 'none'}\n"
        f"- speech tokenizer: {'yes' if pipe.speech_tokenizer is not None else 'no'}\n"
    )


# Text the seeded random pipeline's tokenizer is trained on: the official prompts and some plain English.
RANDOM_CORPUS = [
    DEFAULT_S2M_PROMPT,
    DEFAULT_S2T_PROMPT,
    ASR_INSTRUCTION,
    "You are a helpful assistant.",
    "What is the weather like today? It is sunny and warm, with a light breeze from the west.",
    "One, two, three, four, five, six, seven, eight, nine, ten.",
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
]


def random_parts(seed: int = 0) -> Parts:
    """A seeded, tiny, random pipeline's parts (tests, and the command line before the demo model exists):
    every part real and of the official kinds, the answers meaningless."""
    tokenizer = train_text_tokenizer(RANDOM_CORPUS, vocab_size=320)
    processor = FunAudioChatProcessor(tokenizer)
    with seeded(seed):
        model = FunAudioChatForConditionalGeneration(tiny_config_for(processor)).eval()
    return Parts(model, processor, Token2Wav.random(seed), SpeechTokenizer.random(seed=seed))
