"""``funaudiochat import-official``: the official release -> one pipeline folder.

    funaudiochat import-official --fac Fun-Audio-Chat-8B --cosyvoice Fun-CosyVoice3-0.5B-2512 --out fac-pipe

- ``--fac`` (the Hugging Face checkpoint: ``config.json``, safetensors shards, text tokenizer files): its
  shard headers are checked against the model the config describes (every key and shape, without loading
  the weights: the 8B model does not fit this machine's memory), then every file is copied as is;
- ``--cosyvoice``: ``flow.pt`` and ``hift.pt`` are read with ``torch.load(weights_only=True)`` (nothing is
  unpickled), their sizes read off the shapes, and written as ``flow.safetensors`` / ``hift.safetensors``;
  ``spk2info.pt`` (or ``--speakers``; optional) becomes ``spk2info.safetensors``;
  ``speech_tokenizer_v3.onnx`` (optional) is converted with the ``s3tokenizer`` package's ONNX reader into
  ``speech_tokenizer_v3.safetensors``.

The folder is written beside ``--out`` and renamed into place at the end. Each missing or malformed file is
a ``ValueError`` naming it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import torch
from funaudiochat.base.atomic import atomic_folder
from funaudiochat.drsr import FunAudioChatConfig, FunAudioChatForConditionalGeneration
from funaudiochat.tokenizer import SpeechTokenizer
from funaudiochat.vocoder import CausalFlowMatching, HiFTGenerator
from funaudiochat.vocoder.loading import (
    flow_config_from_state_dict,
    hift_config_from_state_dict,
    save_flow,
    save_hift,
)
from funaudiochat.vocoder.speakers import SpeakerTable
from safetensors import safe_open

from .loaders import (
    CONFIG,
    FLOW,
    HIFT,
    MODEL_CARD,
    SPEAKERS,
    SPEECH_TOKENIZER,
    check_model_config,
    check_tokenizer_files,
)

ONNX_TOKENIZER = "speech_tokenizer_v3.onnx"


def import_official(
    fac: str | os.PathLike,
    cosyvoice: str | os.PathLike,
    out: str | os.PathLike,
    speakers: str | os.PathLike | None = None,
) -> Path:
    """Write the pipeline folder ``out`` from the official checkpoint ``fac`` and the CosyVoice3 folder
    ``cosyvoice`` (see the module docstring); returns its path."""
    fac, cosyvoice, target = Path(fac), Path(cosyvoice), Path(out)
    for folder, flag in ((fac, "--fac"), (cosyvoice, "--cosyvoice")):
        if not folder.is_dir():
            raise ValueError(f"{folder}: {flag} folder not found")
    check_checkpoint(fac)
    speakers_path = Path(speakers) if speakers else cosyvoice / "spk2info.pt"
    if speakers and not speakers_path.is_file():
        raise ValueError(f"{speakers_path}: --speakers file not found")
    if target.exists():
        raise ValueError(f"{target}: already exists; give a new --out folder")
    with atomic_folder(target, replace=False) as staging:
        for item in fac.iterdir():
            if item.is_file():
                shutil.copy2(item, staging / item.name)
        save_flow(read_flow(cosyvoice / "flow.pt"), staging / FLOW)
        save_hift(read_hift(cosyvoice / "hift.pt"), staging / HIFT)
        notes = []
        if speakers_path.is_file():
            table = SpeakerTable.from_spk2info(speakers_path)
            table.save(staging / SPEAKERS)
            notes.append(f"speakers: {', '.join(table.names)} (from {speakers_path.name})")
        if (cosyvoice / ONNX_TOKENIZER).is_file():
            read_onnx_tokenizer(cosyvoice / ONNX_TOKENIZER).save_safetensors(staging / SPEECH_TOKENIZER)
            notes.append(f"speech tokenizer: from {ONNX_TOKENIZER}")
        else:
            print(
                f"import-official: {cosyvoice / ONNX_TOKENIZER} not found; the pipeline has no speech "
                "tokenizer (voice clips will be refused)",
                file=sys.stderr,
            )
        if not (staging / MODEL_CARD).is_file():
            (staging / MODEL_CARD).write_text(_card(fac, cosyvoice, notes), encoding="utf-8")
    return target


def check_checkpoint(folder: Path) -> None:
    """The official checkpoint's files are there, and its shards hold exactly the keys and shapes of the
    model its config describes (the tied SRH head may be absent); checked from the headers alone."""
    config_path = folder / CONFIG
    check_model_config(config_path, "the --fac folder")
    check_tokenizer_files(folder)
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise ValueError(f"{folder}: no *.safetensors weights next to config.json")
    found: dict[str, tuple[int, ...]] = {}
    for shard in shards:
        try:
            with safe_open(str(shard), framework="pt") as f:
                for key in f.keys():
                    found[key] = tuple(f.get_slice(key).get_shape())
        except Exception as err:  # safetensors raises its own error types for corrupt headers
            raise ValueError(f"{shard}: not a readable safetensors file ({err})") from err
    try:
        config = FunAudioChatConfig.from_pretrained(str(folder))
    except Exception as err:  # transformers raises several kinds of errors for configs it cannot build
        raise ValueError(f"{config_path}: not a valid Fun-Audio-Chat config ({err})") from err
    with torch.device("meta"):
        model = FunAudioChatForConditionalGeneration(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tied = set(FunAudioChatForConditionalGeneration._tied_weights_keys)
    problems = []
    missing = sorted(k for k in expected if k not in found and k not in tied)
    unexpected = sorted(k for k in found if k not in expected)
    misshaped = sorted(
        f"{k} (file {found[k]}, model {shape})"
        for k, shape in expected.items()
        if k in found and found[k] != shape
    )
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if keys:
            shown = ", ".join(keys[:10]) + (f", ... ({len(keys) - 10} more)" if len(keys) > 10 else "")
            problems.append(f"{what} keys: {shown}")
    if problems:
        raise ValueError(f"{folder}: the checkpoint does not fit its config.json; " + "; ".join(problems))


def _torch_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ValueError(f"{path}: missing; the --cosyvoice folder holds CosyVoice3's {what}")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        first_line = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(
            f"{path}: refused: not a tensors-only torch file ({type(err).__name__}: {first_line})"
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict (names -> tensors), got {type(state).__name__}")
    return state


def read_flow(path: Path) -> CausalFlowMatching:
    """CosyVoice3's ``flow.pt`` at the size its shapes say."""
    state = _torch_state_dict(path, "flow weights (flow.pt)")
    flow = CausalFlowMatching(flow_config_from_state_dict(state, str(path)))
    return flow.load_official_state_dict(state, str(path))


def read_hift(path: Path) -> HiFTGenerator:
    """CosyVoice3's ``hift.pt`` at the size its shapes say."""
    state = _torch_state_dict(path, "HiFT weights (hift.pt)")
    return HiFTGenerator.from_state_dict(state, hift_config_from_state_dict(state, str(path)), str(path))


def read_onnx_tokenizer(path: Path) -> SpeechTokenizer:
    """``speech_tokenizer_v3.onnx`` through the ``s3tokenizer`` package's ONNX reader."""
    try:
        from s3tokenizer.utils import onnx2torch
    except ImportError as err:
        raise ValueError(
            f"{path}: converting the ONNX speech tokenizer needs the s3tokenizer package "
            "(pip install s3tokenizer==0.3.0)"
        ) from err
    try:
        state = onnx2torch(str(path), None, False)
    except Exception as err:  # onnx raises its own errors for files that are not ONNX models
        raise ValueError(
            f"{path}: not a readable S3 tokenizer ONNX file ({type(err).__name__}: {err})"
        ) from err
    return SpeechTokenizer.from_s3tokenizer_state_dict(state, str(path))


def _card(fac: Path, cosyvoice: Path, notes: list[str]) -> str:
    lines = [
        "# Fun-Audio-Chat pipeline (imported from the official release)\n",
        f"- model: `{fac.name}` (copied as is)",
        f"- vocoder: `{cosyvoice.name}` flow.pt / hift.pt as safetensors",
        *[f"- {note}" for note in notes],
        "",
        "Run: `funaudiochat chat question.wav --model <this folder> --out answer.wav`.",
    ]
    return "\n".join(lines) + "\n"


def add_parser(sub) -> None:
    """The ``import-official`` subcommand's arguments."""
    p = sub.add_parser(
        "import-official",
        help="make a pipeline folder from the official Fun-Audio-Chat and CosyVoice3 downloads",
        description="Write a pipeline folder from the official checkpoint and the CosyVoice3 folder.",
    )
    p.add_argument("--fac", required=True, help="the Fun-Audio-Chat-8B folder (config.json + safetensors)")
    p.add_argument("--cosyvoice", required=True, help="the Fun-CosyVoice3-0.5B folder (flow.pt, hift.pt)")
    p.add_argument("--out", required=True, help="the new pipeline folder")
    p.add_argument("--speakers", help="a spk2info.pt to use (default: the CosyVoice3 folder's, if any)")
    p.set_defaults(func=cmd_import_official)


def cmd_import_official(args) -> int:
    folder = import_official(args.fac, args.cosyvoice, args.out, args.speakers)
    print(f"{folder}: pipeline folder written; try `funaudiochat chat question.wav --model {folder}`")
    return 0
