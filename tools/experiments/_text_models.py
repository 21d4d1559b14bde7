"""What the experiments on text LLMs share (``text_phrasings.py``, ``text_tool_calls.py``): the ``--model
NAME=FOLDER`` arguments, loading a model folder, and writing the results."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--run`` (the demo run folder), ``--model NAME=FOLDER`` (repeatable) and ``--out`` on ``parser``."""
    parser.add_argument("--run", type=Path, required=True, help="the demo run folder (its corpus)")
    parser.add_argument(
        "--model", action="append", required=True, metavar="NAME=FOLDER", help="a text LLM (repeatable)"
    )
    parser.add_argument("--out", type=Path, help="write the results here (JSON)")


def named_models(parser: argparse.ArgumentParser, given: list[str]) -> dict[str, Path]:
    """The ``--model`` arguments as name -> folder (``parser.error`` on one without ``NAME=``)."""
    models = {}
    for argument in given:
        name, sep, folder = argument.partition("=")
        if not sep or not name or not folder:
            parser.error(f"--model wants NAME=FOLDER, got {argument!r}")
        models[name] = Path(folder)
    return models


def load_text_lm(folder: Path):
    """``(model in eval mode, tokenizer)`` of a Hugging Face causal-LM folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def write_results(path: Path | None, results: dict) -> None:
    """``results`` as indented JSON at ``path`` (written atomically; None: nowhere)."""
    if path is not None:
        from funaudiochat.base.atomic import atomic_write_text

        atomic_write_text(path, json.dumps(results, indent=2) + "\n")
