"""A build's trained products, kept so that a later session continues a build instead of redoing it.

A stage's products (``DemoStage.products``: paths or glob patterns in its folder) are what its training
made: weights and their configs, not its data or Lightning checkpoints. A stage does not train again when
its products are there (``fit_recipe(product=...)``), so a run folder given the products of another run
redoes only the cheap parts of each stage (its data, re-coding, scores) and keeps the trained weights.

    python tools/train_demo.py --out runs/demo --save-products artifacts/demo_build   # after a build
    python tools/train_demo.py --out runs/new --restore-products artifacts/demo_build --jobs 2

``save_products`` copies the products and the ``stage.json`` of every finished stage to
``<folder>/<stage>/``. ``restore_products`` copies them into a run folder for each stage whose recorded
settings agree with the build's on every field the stage and the stages before it read
(``stage.json``'s ``settings_read``, recorded while the stage ran); the others train as usual.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

DONE_FILE = "stage.json"
RESTORED_FILE = "restored.json"
# Settings added after builds were saved, each with the stage (or stages) that read it and the value their
# code behaved as before (the old default): a saved record of such a stage that does not know the field
# counts as having read it at that value, so a build that sets it otherwise retrains the stage and
# everything after it instead of restoring products made without it.
LLM_STAGES = ("text_lm", "text_lm_copy", "pre_alignment", "core_cocktail", "dpo")
TOWER_STAGES = ("audio_encoder", "tower_match")
VOCODER_STAGES = ("speech_tokenizer", "vocoder_hift", "vocoder_flow")  # the tokenizer read it until 12-07
# How a stage computes, not what it learns: a product trained at another precision is restored all the
# same; its marker keeps the precision it trained at, which the model card names (``other_settings``).
COMPUTE_SETTINGS = ("llm_precision", "tower_precision", "vocoder_precision", "compile_llm")
ADDED_SETTINGS: dict[str, tuple[str | tuple[str, ...], Any]] = {
    "text_lm_skills": ("text_lm", False),
    "audio_encoder_width": ("audio_encoder", 128),
    "flow_inference_steps": ("package", 10),
    "plan_speech": ("package", False),
    "speech_timing": ("package", False),
    "listening_transcripts": ("pre_alignment", False),
    "text_lm_buckets": ("text_lm", 8),
    "text_lm_copies_from_start": ("text_lm", False),
    "text_lm_copy_tools": ("text_lm_copy", 0),
    "text_lm_copy_practice": ("text_lm_copy", 0),
    "spoken_practice_voices": ("practice_speech", 0),
    "listening_voices": (("audio_encoder", "pre_alignment"), 0),
    "cocktail_voice_questions": ("core_cocktail", False),
    "cocktail_text_pairs": ("core_cocktail", 0),
    "speech_polish_steps": ("dpo", 0),
    "audio_encoder_words": ("audio_encoder", 0),
    "tower_token_table": ("audio_encoder", "text_lm"),
    "group_size": (("conversations", *TOWER_STAGES, "pre_alignment", "core_cocktail", "dpo", "package"), 5),
    "srh_width": ("pre_alignment", 128),
    "srh_layers": ("pre_alignment", 3),
    "llm_precision": (LLM_STAGES, "32-true"),
    "tower_precision": (TOWER_STAGES, "32-true"),
    "vocoder_precision": (VOCODER_STAGES, "32-true"),
    "compile_llm": (LLM_STAGES, False),
}


def product_paths(folder: Path, patterns: Sequence[str]) -> list[Path]:
    """The existing files or folders of ``folder`` that ``patterns`` (relative paths or globs) name."""
    found: list[Path] = []
    for pattern in patterns:
        matches = sorted(folder.glob(pattern)) if any(c in pattern for c in "*?[") else [folder / pattern]
        found += [path for path in matches if path.exists() and path.name not in (DONE_FILE, RESTORED_FILE)]
    return found


def remove_products(folder: Path, patterns: Sequence[str]) -> None:
    """Delete the products of a stage folder (a forced stage trains again)."""
    for path in product_paths(folder, patterns):
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _copy(source: Path, target: Path) -> None:
    """Copy a file or folder so that ``target`` appears whole or not at all (a stage that finds its product
    does not train: a half-copied one must never be there)."""
    from funaudiochat.base.atomic import atomic_folder, atomic_path

    if source.is_dir():
        with atomic_folder(target) as staging:
            shutil.copytree(source, staging, dirs_exist_ok=True)
    else:
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)


def save_products(build, folder: Path) -> list[str]:
    """Copy the ``stage.json`` and the products of every finished stage of ``build`` (a ``DemoBuild``) to
    ``folder/<stage>/``, each stage's folder replaced as a whole (atomically); returns the stages saved."""
    from funaudiochat.base.atomic import atomic_folder

    saved = []
    for name, stage in build.stages.items():
        if not build.done(name):
            continue
        source = build.folder(name)
        with atomic_folder(Path(folder) / name) as staging:
            shutil.copyfile(source / DONE_FILE, staging / DONE_FILE)
            for path in product_paths(source, stage.products):
                destination = staging / path.relative_to(source)
                destination.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if path.is_dir() else shutil.copyfile)(path, destination)
        saved.append(name)
    return saved


def settings_read(records: Mapping[str, dict], stages: Mapping[str, Any], name: str) -> dict[str, set]:
    """Each settings field that stage ``name`` or a stage it needs (transitively) read, with the values
    they read it at, from their ``stage.json`` records (``records``; a record without ``settings_read``
    read every field).

    Raises:
        KeyError: a stage on the way has no record."""
    fields = {field: {json.dumps(value)} for field, value in own_settings(records[name], name).items()}
    for need in stages[name].needs:
        for field, values in settings_read(records, stages, need).items():
            fields.setdefault(field, set()).update(values)
    return fields


def own_settings(record: dict, name: str) -> dict[str, Any]:
    """The settings stage ``name`` read as it trained, from its ``stage.json`` ``record``: those of the run
    that trained it when its products were restored (the marker's ``settings``), else the fields its run
    recorded in ``settings_read`` (every field when it recorded none), with ``ADDED_SETTINGS`` at their old
    value for a record from before a field existed (also for a restored stage whose marker predates
    ``settings``: its run's are the best known; and for a marker made by a run from before a field
    existed)."""
    restored, settings = record.get("restored") or {}, record["settings"]
    if "settings" in restored:
        own = dict(restored["settings"])
    else:
        own = {field: settings.get(field) for field in record.get("settings_read", settings)}
    for field, (readers, before) in ADDED_SETTINGS.items():
        readers = (readers,) if isinstance(readers, str) else readers
        if name in readers and field not in settings:
            own[field] = before
    return own


def recorded_seconds(record: dict, seconds: float | None) -> float | None:
    """The training seconds a ``stage.json`` ``record`` stands for: those of the run that trained its
    products when they were restored (``restored.trained_seconds``), else ``seconds`` (this run's)."""
    trained = (record.get("restored") or {}).get("trained_seconds")
    return seconds if trained is None else float(trained)


def restore_products(build, folder: Path) -> dict[str, str]:
    """Copy the products saved in ``folder`` (``save_products``) into the unfinished stages of ``build``
    whose recorded settings agree with ``build.settings`` on every field they and their inputs read, but
    for ``COMPUTE_SETTINGS`` (the marker ``restored.json`` keeps the stage's own, ``own_settings``).

    Returns each saved stage's outcome: ``"restored"`` or why it was not ("done already", the settings
    that differ, an input stage missing from ``folder``).

    Raises:
        ValueError: ``folder`` holds no saved stage."""
    from funaudiochat.base.atomic import atomic_write_text

    folder = Path(folder)
    records = {
        path.parent.name: json.loads(path.read_text(encoding="utf-8"))
        for path in folder.glob(f"*/{DONE_FILE}")
        if path.parent.name in build.stages
    }
    if not records:
        raise ValueError(f"{folder}: no saved stage (<stage>/{DONE_FILE}); make one with --save-products")
    current = vars(build.settings)
    outcome: dict[str, str] = {}
    for name, stage in build.stages.items():
        if name not in records or not stage.products:
            continue
        if build.done(name):
            outcome[name] = "done already"
            continue
        try:
            fields = settings_read(records, build.stages, name)
        except KeyError as missing:
            outcome[name] = f"not restored: its input stage {missing.args[0]!r} is not in {folder}"
            continue
        differ = sorted(
            f
            for f, values in fields.items()
            if f not in COMPUTE_SETTINGS and values != {json.dumps(current.get(f))}
        )
        if differ:
            outcome[name] = f"not restored: the settings differ in {differ}"
            continue
        target = build.folder(name)
        for path in product_paths(folder / name, stage.products):
            destination = target / path.relative_to(folder / name)
            if not destination.exists():
                _copy(path, destination)
        # a stage restored there too keeps the seconds of the run that trained it
        trained = recorded_seconds(records[name], records[name].get("seconds"))
        marker = {
            "from": str(folder.resolve()),
            "trained_seconds": trained,
            "settings": own_settings(records[name], name),
        }
        atomic_write_text(target / RESTORED_FILE, json.dumps(marker) + "\n")
        outcome[name] = "restored"
    return outcome


class SettingsReads:
    """A ``DemoSettings`` seen by a stage: every field read is added to ``names`` (``stage.json`` records
    them as ``settings_read``, which ``restore_products`` compares)."""

    def __init__(self, settings) -> None:
        object.__setattr__(self, "_settings", settings)
        object.__setattr__(self, "names", set())

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._settings, name)  # AttributeError for a field that does not exist
        self.names.add(name)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a stage may not change the settings")
