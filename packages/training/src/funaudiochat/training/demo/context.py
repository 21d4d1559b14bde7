"""What every stage of the demo recipe gets: its settings and run folder (``StageContext``), and
``fit_recipe``, which runs a training recipe of ``packages/training/recipes`` in a stage's folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass
class DemoSettings:
    """Settings of a demo build (the defaults reproduce the shipped model).

    seed: every seeded choice (held-out splits, initialisations); text_vocab_size: the BPE's size (merges
    plus 256 byte symbols; the special tokens come on top); pairs_per_file: speak only the first pairs of
    each corpus file (tests; None: all); tokenizer_steps / text_lm_steps: training steps of the speech
    tokenizer and of the text LLM; text_lm_size: "demo" (the recipe's sizes) or "tiny" (tests);
    pre_alignment_steps: training steps of pre-alignment."""

    seed: int = 0
    text_vocab_size: int = 1024
    pairs_per_file: int | None = None
    tokenizer_steps: int = 3000
    text_lm_steps: int = 1000
    text_lm_size: str = "demo"
    pre_alignment_steps: int = 1500


class StageContext(Protocol):
    """The run a stage belongs to (``build.DemoBuild``)."""

    settings: DemoSettings

    def folder(self, stage: str) -> Path: ...

    def require(self, stage: str, by: str) -> Path: ...


RECIPES = Path(__file__).resolve().parents[4] / "recipes"  # packages/training/recipes


def fit_recipe(recipe: str, run_dir: Path, overrides: Sequence[str], extra: dict | None = None) -> None:
    """``funaudiochat-train fit`` of ``recipes/<recipe>.yaml`` in ``run_dir`` with dotted ``overrides`` and
    the sections of ``extra`` merged on top (written to ``run_dir/demo.yaml``: nested values such as a
    model spec), resuming from its newest checkpoint when it has one."""
    import yaml

    from ..cli import fit

    configs = [RECIPES / f"{recipe}.yaml"]
    if extra:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "demo.yaml").write_text(yaml.safe_dump(extra, sort_keys=False), encoding="utf-8")
        configs.append(run_dir / "demo.yaml")
    overrides = [f"trainer.default_root_dir={run_dir}", *overrides]
    checkpoints = sorted(run_dir.rglob("*.ckpt"), key=lambda path: path.stat().st_mtime)
    if checkpoints:  # the newest (a new run logs into a new version folder, so "last" would not find it)
        overrides.append(f"ckpt_path={checkpoints[-1]}")
    fit(configs, overrides)
