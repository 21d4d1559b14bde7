"""``funaudiochat export-vllm``: a pipeline or checkpoint folder -> a folder that vLLM serves unchanged.

    funaudiochat export-vllm --model fac-pipe --out fac-vllm
    vllm serve fac-vllm          # with packages/vllm-plugin installed beside vLLM 0.32-0.33 (docs/vllm.md)

vLLM serves the speech-to-text path (``FunAudioChatForConditionalGeneration``) and loads every
``*.safetensors`` file of its folder as model weights, so a pipeline folder (which also holds the vocoder
and the speech tokenizer) cannot be given to it as it is. The export holds the model's own files only:
``config.json`` (and ``generation_config.json``), its weights (``model.safetensors``, or the shards of
``model.safetensors.index.json``), the text tokenizer and chat template, ``processor_config.json``, and
what vLLM reads besides (``preprocessor_config.json``, ``speech_tokenizer/``: the source's own when it
has them, as an official checkpoint does, else written by ``funaudiochat.drsr.serving_files``). Files are
hard-linked where the file system allows (the 8B weights are not copied), else copied; the folder is
built beside ``--out`` and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from funaudiochat.base.atomic import atomic_folder
from funaudiochat.drsr.serving_files import (
    FEATURE_EXTRACTOR_FILE,
    SPEECH_TOKENIZER_FOLDER,
    write_feature_extractor_config,
    write_speech_tokenizer,
)

from .loaders import CONFIG, MODEL_CARD, check_model_config, check_tokenizer_files

WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"


def model_weight_files(folder: Path) -> list[str]:
    """The names of the model's weight files in ``folder``: those of ``model.safetensors.index.json``, or
    ``model.safetensors`` (a ``ValueError`` naming what is missing otherwise)."""
    index = folder / WEIGHTS_INDEX
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{index}: not a safetensors index (a JSON object with a weight_map)") from err
        missing = [name for name in shards if not (folder / name).is_file()]
        if missing:
            raise ValueError(f"{index}: lists weight files that are not in the folder: {', '.join(missing)}")
        return [WEIGHTS_INDEX, *shards]
    if (folder / WEIGHTS).is_file():
        return [WEIGHTS]
    raise ValueError(f"{folder}: no model weights ({WEIGHTS} or {WEIGHTS_INDEX} with its shards)")


def export_vllm(model: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the vLLM folder ``out`` from the pipeline or checkpoint folder ``model`` (module docstring);
    returns its path. ``out`` must not exist yet."""
    source, target = Path(model), Path(out)
    if not source.is_dir():
        raise ValueError(f"{source}: --model folder not found")
    if target.exists():
        raise ValueError(f"{target}: already exists; give a new --out folder")
    config = check_model_config(source / CONFIG, "the --model folder")
    check_tokenizer_files(source)
    weights = model_weight_files(source)
    others = {p.name for p in source.glob("*.safetensors")} - set(weights)  # the vocoder, speech tokenizer
    with atomic_folder(target, replace=False) as staging:
        for item in sorted(source.iterdir()):
            if item.is_file() and item.name not in others and item.name != MODEL_CARD:
                _link_or_copy(item, staging / item.name)
        if (source / SPEECH_TOKENIZER_FOLDER).is_dir():
            shutil.copytree(source / SPEECH_TOKENIZER_FOLDER, staging / SPEECH_TOKENIZER_FOLDER)
        else:
            write_speech_tokenizer(staging)
        if not (staging / FEATURE_EXTRACTOR_FILE).is_file():
            n_mels = int(config.get("audio_config", {}).get("num_mel_bins", 128))
            write_feature_extractor_config(staging, n_mels)
    return target


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target)


def add_parser(sub) -> None:
    """The ``export-vllm`` subcommand's arguments."""
    p = sub.add_parser(
        "export-vllm",
        help="write a folder that vLLM serves (the speech-to-text path) from a pipeline or checkpoint folder",
        description="Write a folder that vLLM serves unchanged (the model, its tokenizers, the feature "
        "extractor) from a pipeline or checkpoint folder; see docs/vllm.md.",
    )
    p.add_argument("--model", required=True, help="a pipeline folder, or a checkpoint saved by this project")
    p.add_argument("--out", required=True, help="the new folder")
    p.set_defaults(func=cmd_export_vllm)


def cmd_export_vllm(args) -> int:
    folder = export_vllm(args.model, args.out)
    print(f"{folder}: written; serve it with `vllm serve {folder}` (docs/vllm.md)")
    return 0
