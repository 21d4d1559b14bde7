"""A new Speech Refined Head for a trained pipeline: the head and the speech-token table drawn again and the
speaking fit of pre-alignment run on them alone, so that one choice about the head (its table, the text
layout it is trained on, how loud the text embedding is in its conditioning) is compared with all else
equal. Measure the result with ``srh_free_run.py``.

    python tools/experiments/srh_refit.py --model packages/chat/src/funaudiochat/chat/demo_model \
        --conversations runs/demo/conversations --processor runs/demo/text_tokenizer \
        [--table random|fsq] [--text-scale 20] [--steps 600] --out runs/exp_srh/NAME
    python tools/experiments/srh_free_run.py --model runs/exp_srh/NAME/pipeline \
        --conversations runs/demo/conversations/heldout.jsonl --rows 20 --out FILE

Steps: the pipeline's model with a freshly initialised SRH (``audio_invert_tower``) and its speech-token
table (``audio_tower.embed_tokens``, tied to the head) redrawn at std 0.3 (the recipe's
``speech_embedding_std``), ``audio_config.srh_text_scale`` set to ``--text-scale``, is written to
``OUT/start``; ``funaudiochat-train fit`` of the pre-alignment recipe then trains the SRH and the speech
grouping on the spoken replies of ``CONVERSATIONS/train.jsonl`` (the LLM and the listening path frozen, lr
1e-3, as the recipe's speaking fit) into ``OUT/fit``; ``OUT/pipeline`` is the pipeline folder with that
model. ``--conversations`` may hold another reply layout than the one the LLM was trained on (e.g. made with
``train_demo.py --stage conversations --set reply_alignment=words``): the frozen LLM then reads a layout it
never saw, and only the head learns it.

``--head keep``: the pipeline's own head and table are trained on instead of drawn again (``--table`` and
``--text-scale`` then do not apply): how much more a trained model's head gains from more of the speaking
fit alone.

``--head-width W --head-layers L``: the new head's decoder (``crq_transformer_config``) is W wide (heads of
32, FFN 3W) with L layers instead of the pipeline's (the demo model's: 128, 3): whether the head's size
limits what it says.

``--table fsq``: the table's code rows are built from the speech tokenizer's FSQ digits (each code is 8
ternary digits, ``funaudiochat.tokenizer.speech_tokenizer``): one random vector per (digit, level), summed,
plus a per-code part holding ``1 - --fsq-share`` of the variance. Codes one digit apart then start close,
and the tied head's logits are nearly a sum over digits.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path


def fsq_table(codes: int, width: int, std: float, share: float):
    """``[codes, width]`` rows: per FSQ digit and level a vector, summed over a code's digits (``share`` of
    the variance ``std**2``), plus an independent part per code (the rest)."""
    import torch
    from funaudiochat.tokenizer.speech_tokenizer import FSQ_DIMS, FSQ_LEVELS, codes_to_levels

    digits = codes_to_levels(torch.arange(codes))  # [codes, FSQ_DIMS]
    per_level = torch.randn(FSQ_DIMS, FSQ_LEVELS, width) * (std * (share / FSQ_DIMS) ** 0.5)
    structured = per_level[torch.arange(FSQ_DIMS)[None, :], digits].sum(1)
    return structured + torch.randn(codes, width) * std * (1 - share) ** 0.5


def resize_head(crq: dict, width: int | None, layers: int | None) -> dict:
    """The SRH decoder config ``crq`` (``audio_config.crq_transformer_config``) at ``width`` and ``layers``
    where given (``head_shape.srh_shape``: the recipe's ``srh_width`` / ``srh_layers`` proportions)."""
    from funaudiochat.training.demo.head_shape import srh_shape

    width = crq["hidden_size"] if width is None else width
    layers = crq["num_hidden_layers"] if layers is None else layers
    return {**crq, **srh_shape(width, layers, crq.get("head_dim", 32))}


def make_start(
    model_folder: Path,
    out: Path,
    table: str,
    text_scale: float,
    share: float,
    seed: int,
    keep: bool = False,
    width: int | None = None,
    layers: int | None = None,
) -> None:
    """The model of ``model_folder`` with a fresh SRH and speech table (``keep``: its own), saved to
    ``out``; ``width`` / ``layers``: the fresh head's decoder size (``resize_head``)."""
    import torch
    from funaudiochat.drsr.modeling import FunAudioChatForConditionalGeneration
    from funaudiochat.drsr.speech_heads import SpeechRefinedHead
    from funaudiochat.tokenizer.speech_tokenizer import CODEBOOK_SIZE
    from funaudiochat.training.demo.context import DemoSettings
    from funaudiochat.training.llm.module import init_speech_embeddings

    std = DemoSettings().speech_embedding_std  # the recipe's
    model = FunAudioChatForConditionalGeneration.from_pretrained(model_folder)
    if keep:
        model.save_pretrained(out)
        return
    model.config.audio_config.srh_text_scale = text_scale
    audio = model.config.audio_config
    audio.crq_transformer_config = resize_head(audio.crq_transformer_config, width, layers)
    torch.manual_seed(seed)  # the head, then the table, from the global generator
    head = SpeechRefinedHead(model.config.audio_config)
    head.apply(model._init_weights)
    model.audio_invert_tower = head
    init_speech_embeddings(model, std)
    if table == "fsq":  # the code rows only: the special ids (pad: zero) keep their draw
        weight = model.audio_tower.embed_tokens.weight
        with torch.no_grad():
            weight[:CODEBOOK_SIZE] = fsq_table(CODEBOOK_SIZE, weight.shape[1], std, share)
    model._tie_speech_head()
    model.save_pretrained(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, required=True, help="a pipeline folder (the shipped demo model)"
    )
    parser.add_argument("--conversations", type=Path, required=True, help="folder with train.jsonl")
    parser.add_argument("--processor", type=Path, required=True, help="the run's text_tokenizer folder")
    parser.add_argument(
        "--head", choices=("new", "keep"), default="new", help="draw the head again or train on"
    )
    parser.add_argument("--head-width", type=int, help="the new head's decoder width (demo model: 128)")
    parser.add_argument("--head-layers", type=int, help="the new head's decoder layers (demo model: 3)")
    parser.add_argument("--table", choices=("random", "fsq"), default="random")
    parser.add_argument("--fsq-share", type=float, default=0.8, help="variance share of the FSQ digits")
    parser.add_argument("--text-scale", type=float, default=1.0, help="audio_config.srh_text_scale")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if not 0.0 <= args.fsq_share <= 1.0:
        parser.error(f"--fsq-share must lie in [0, 1], got {args.fsq_share}")
    if args.head == "keep" and (args.head_width is not None or args.head_layers is not None):
        parser.error("--head-width / --head-layers size a new head: not with --head keep")
    if args.head_width is not None or args.head_layers is not None:  # (0 is a size given, and refused)
        from funaudiochat.training.demo.head_shape import srh_shape

        try:
            width, layers = args.head_width, args.head_layers
            srh_shape(128 if width is None else width, 1 if layers is None else layers)
        except ValueError as error:
            parser.error(f"--head-width / --head-layers: {error}")
    if not (args.conversations / "train.jsonl").is_file():
        parser.error(f"{args.conversations}/train.jsonl does not exist")

    from funaudiochat.training.demo.model_stages import LISTENING_FROZEN, write_spoken_replies

    args.out.mkdir(parents=True, exist_ok=True)
    start = args.out / "start"
    if not (start / "model.safetensors").exists():
        make_start(
            args.model,
            start,
            args.table,
            args.text_scale,
            args.fsq_share,
            args.seed,
            keep=args.head == "keep",
            width=args.head_width,
            layers=args.head_layers,
        )
    spoken = args.out / "spoken_replies.jsonl"
    if not spoken.exists():
        write_spoken_replies(args.conversations / "train.jsonl", spoken)
    fit = args.out / "fit"
    if not (fit / "model").exists():
        recipe = Path(__file__).resolve().parents[2] / "packages/training/recipes/pre_alignment.yaml"
        command = [
            sys.executable, "-m", "funaudiochat.training.cli", "fit", "--config", str(recipe),
            f"model.model={start}", f"data.train={spoken}", f"data.processor={args.processor}",
            f"trainer.max_steps={args.steps}", f"model.lr={args.lr}", "model.warmup_steps=50",
            f"model.freeze={LISTENING_FROZEN}", f"trainer.default_root_dir={fit}", f"seed={args.seed}",
        ]  # fmt: skip
        subprocess.run(command, check=True)
    from funaudiochat.base.atomic import atomic_folder, atomic_write_text

    pipeline = args.out / "pipeline"
    with atomic_folder(pipeline) as staging:
        shutil.copytree(args.model, staging, dirs_exist_ok=True)
        for name in ("model.safetensors", "config.json"):
            shutil.copy2(fit / "model" / name, staging / name)
    record = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    atomic_write_text(args.out / "refit.json", json.dumps(record, indent=1) + "\n")
    print(f"pipeline with the refitted head: {pipeline}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
