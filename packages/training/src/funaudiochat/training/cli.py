"""``funaudiochat-train``: run a training recipe (OmegaConf YAML) with Lightning.

Usage:
    funaudiochat-train fit --config RECIPE.yaml [--config MORE.yaml ...] [OVERRIDE ...]
    funaudiochat-train print-config --config RECIPE.yaml [OVERRIDE ...]
    funaudiochat-train stages
    funaudiochat-train merge --base M0 --tuned M1 [--alpha 0.5] --out M     (Core-Cocktail merge)

Overrides are dotted keys, ``key=value`` or LightningCLI-style ``--key=value`` / ``--key value``:
    funaudiochat-train fit --config packages/training/recipes/vocoder_hift.yaml \\
        data.train=data/speech trainer.max_steps=2000 --model.hift.preset=default

A recipe has these sections, merged in order (later files and overrides win):
    stage:   a name from ``stages.STAGES`` (``vocoder_flow``, ``vocoder_hift``): which module and data classes
    seed:    passed to ``lightning.seed_everything(seed, workers=True)`` (optional)
    model:   keyword arguments of the stage's LightningModule (a nested mapping such as ``flow:`` overrides
             the model's config dataclass, see ``config.build_config``)
    data:    keyword arguments of the stage's LightningDataModule
    trainer: keyword arguments of ``lightning.Trainer``
    ckpt_path: a Lightning checkpoint to resume from (``last``: the newest one), optional
    compile: ``true`` (the stage's own ``compile_targets``, ``stages.STAGES``: e.g. the text LLM's whole
             Qwen3, the speech LLM's decoders and audio layers), or dotted paths of submodules of the
             LightningModule (a ``ModuleList``: each of its modules), which then run through
             ``torch.compile`` (``nn.Module.compile``, dynamic shapes: one graph for every batch length;
             weights and state-dict names stay as they are); optional, default ``false``
Three ``trainer`` keys take names instead of objects:
    strategy:  a Lightning name (``ddp``, ``ddp_find_unused_parameters_true``, ``fsdp``,
               ``deepspeed_stage_2``), ``fsdp2`` (Lightning's ``ModelParallelStrategy``: parameters sharded
               with ``fully_shard`` over the data-parallel ranks, CPUs included; the LLM stages shard each
               decoder layer) or ``{ddp|fsdp|fsdp2|deepspeed: {...}}`` with the strategy's arguments, e.g.
               ``{deepspeed: {config: packages/training/recipes/deepspeed/zero3.json}}`` (GPUs)
    logger:    false, or a list of ``csv`` / ``tensorboard`` (written under ``default_root_dir``)
    callbacks: a list of ``progress`` (rich progress bar), ``lr_monitor``, or ``{checkpoint: {...}}`` with
               ``ModelCheckpoint`` arguments (e.g. ``every_n_train_steps``, ``save_last``; left out with
               ``enable_checkpointing: false``)
Checkpoints are written atomically (``checkpoint_io.AtomicCheckpointIO``); resume a run with
``ckpt_path=last`` (or a checkpoint file) at the top level of the command line.

OmegaConf interpolation works (``export_path: ${trainer.default_root_dir}/flow.safetensors``), and ``???``
marks a value the user must give (e.g. ``data.train``). ``fit`` writes the resolved recipe to
``<trainer.default_root_dir>/config.yaml`` when that folder is set, then runs ``Trainer.fit``.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from .errors import UserInputError
from .stages import STAGES

SECTIONS = ("stage", "seed", "model", "data", "trainer", "ckpt_path", "compile")
COMMANDS = ("fit", "print-config", "stages", "merge")


class RecipeError(UserInputError):
    """A recipe or command line that cannot be run; the message says what to change."""


def parse_args(argv: Sequence[str]) -> tuple[str, list[str], list[str]]:
    """``argv`` (without the program name) -> ``(command, config files, dotlist overrides)``."""
    if not argv or argv[0] in ("-h", "--help"):
        raise RecipeError("usage")
    command, rest = argv[0], list(argv[1:])
    if command not in COMMANDS:
        raise RecipeError(f"unknown command {command!r}; choose one of {list(COMMANDS)}")
    configs: list[str] = []
    overrides: list[str] = []
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg in ("-c", "--config"):
            if i + 1 >= len(rest):
                raise RecipeError(f"{arg} needs a file name")
            configs.append(rest[i + 1])
            i += 2
            continue
        if arg.startswith("--config="):
            configs.append(arg.split("=", 1)[1])
        elif arg.startswith("--"):
            key = arg[2:]
            if "=" in key:
                overrides.append(key)
            elif i + 1 < len(rest) and not rest[i + 1].startswith("--"):
                overrides.append(f"{key}={rest[i + 1]}")
                i += 1
            else:
                raise RecipeError(f"{arg} needs a value (--key=value or --key value)")
        elif "=" in arg:
            overrides.append(arg)
        else:
            raise RecipeError(f"cannot read argument {arg!r}; overrides look like key=value")
        i += 1
    return command, configs, overrides


def load_recipe(configs: Sequence[str | Path], overrides: Sequence[str] = ()) -> DictConfig:
    """Merge recipe files and overrides into one (unresolved) ``DictConfig``; check its sections."""
    if not configs:
        raise RecipeError("no recipe given: pass --config RECIPE.yaml")
    parts = []
    for path in configs:
        if not Path(path).is_file():
            raise RecipeError(f"{path}: recipe file not found")
        try:
            parts.append(OmegaConf.load(path))
        except (OmegaConfBaseException, OSError, ValueError) as err:
            raise RecipeError(f"{path}: cannot read the recipe: {err}") from err
    try:
        parts.append(OmegaConf.from_dotlist(list(overrides)))
        recipe = OmegaConf.merge(*parts)
    except (OmegaConfBaseException, ValueError, yaml.YAMLError) as err:
        raise RecipeError(
            f"bad override or recipe: {err} (YAML flow values need a space after ':', e.g. {{a: 1}})"
        ) from err
    if not isinstance(recipe, DictConfig):
        raise RecipeError("a recipe must be a mapping with the sections " + ", ".join(SECTIONS))
    unknown = sorted(set(recipe.keys()) - set(SECTIONS))
    if unknown:
        raise RecipeError(f"unknown recipe sections {unknown}; a recipe has {list(SECTIONS)}")
    return recipe


def resolve(recipe: DictConfig) -> dict[str, Any]:
    """Interpolate and check that no mandatory ``???`` value is left; returns plain containers."""
    try:
        plain = OmegaConf.to_container(recipe, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as err:
        key = getattr(err, "full_key", None) or str(err)
        raise RecipeError(f"the recipe needs a value for {key}: pass {key}=...") from err
    except OmegaConfBaseException as err:
        raise RecipeError(f"cannot resolve the recipe: {err}") from err
    stage = plain.get("stage")
    if stage not in STAGES:
        raise RecipeError(f"recipe stage {stage!r} is not one of {sorted(STAGES)}")
    for section in ("model", "data", "trainer"):
        value = plain.get(section) or {}
        if not isinstance(value, dict):
            raise RecipeError(f"recipe section {section!r} must be a mapping of keyword arguments")
        plain[section] = value
    targets = plain.get("compile")
    if targets is True and not STAGES[stage].compile_targets:
        raise RecipeError(f"compile: true names no submodule for stage {stage!r}: give a list of paths")
    if (
        targets is not None
        and not isinstance(targets, bool)
        and (not isinstance(targets, list) or not all(isinstance(t, str) and t for t in targets))
    ):
        raise RecipeError(
            f"compile must be true, false or a list of submodule paths such as [model], got {targets!r}"
        )
    seed = plain.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise RecipeError(f"seed must be an integer, got {seed!r}")
    return plain


def _check_kwargs(target: Any, kwargs: dict[str, Any], section: str) -> None:
    params = inspect.signature(target).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    allowed = [name for name in params if name != "self"]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise RecipeError(f"unknown {section} arguments {unknown}; {section} accepts {allowed}")


LOGGERS = ("csv", "tensorboard")
STRATEGIES = ("ddp", "fsdp", "fsdp2", "deepspeed")
CALLBACKS = ("progress", "lr_monitor", "checkpoint")


def trainer_objects(trainer_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Replace the named ``logger`` and ``callbacks`` of a recipe by Lightning objects; add the atomic
    checkpoint writer, and ``threads.ThreadsFromFile`` when ``FUNAUDIOCHAT_THREADS_FILE`` is set."""
    from lightning.pytorch import callbacks as cb
    from lightning.pytorch import loggers

    from .checkpoint_io import AtomicCheckpointIO

    kwargs = dict(trainer_kwargs)
    root = kwargs.get("default_root_dir") or "."
    names = kwargs.get("logger")
    if isinstance(names, (list, tuple)):
        made = []
        for name in names:
            if name == "csv":
                made.append(loggers.CSVLogger(root, name="logs"))
            elif name == "tensorboard":
                made.append(loggers.TensorBoardLogger(root, name="logs"))
            else:
                raise RecipeError(f"unknown trainer.logger {name!r}; choose from {list(LOGGERS)} or false")
        kwargs["logger"] = made
    made_callbacks = []
    for item in kwargs.get("callbacks") or []:
        name, options = (item, {}) if isinstance(item, str) else next(iter(dict(item).items()), (None, None))
        if isinstance(item, dict) and len(item) != 1:
            raise RecipeError(f"a trainer.callbacks entry is a name or {{name: {{...}}}}, got {item!r}")
        if name == "progress":
            made_callbacks.append(cb.RichProgressBar(**(options or {})))
        elif name == "lr_monitor":
            made_callbacks.append(cb.LearningRateMonitor(**(options or {})))
        elif name == "checkpoint":
            if kwargs.get("enable_checkpointing") is not False:  # off: the recipe's schedule is moot
                made_callbacks.append(cb.ModelCheckpoint(**(options or {})))
        else:
            raise RecipeError(f"unknown trainer.callbacks entry {name!r}; choose from {list(CALLBACKS)}")
    from .threads import threads_callback

    raising = threads_callback()  # a scheduler beside it may give it more cores while it runs
    if raising is not None:
        made_callbacks.append(raising)
    if "callbacks" in kwargs or raising is not None:
        kwargs["callbacks"] = made_callbacks
    strategy = kwargs.get("strategy")
    if strategy == "fsdp2":
        strategy = {"fsdp2": {}}
    if isinstance(strategy, dict):
        if len(strategy) != 1 or next(iter(strategy)) not in STRATEGIES:
            raise RecipeError(
                f"trainer.strategy as a mapping is {{name: {{...}}}} with name in {list(STRATEGIES)}"
            )
        name, options = next(iter(strategy.items()))
        from lightning.pytorch import strategies

        cls = {
            "ddp": strategies.DDPStrategy,
            "fsdp": strategies.FSDPStrategy,
            "fsdp2": strategies.ModelParallelStrategy,
            "deepspeed": strategies.DeepSpeedStrategy,
        }
        if name == "fsdp2":  # data parallel with sharded parameters (fully_shard), no tensor parallelism
            devices, nodes = kwargs.get("devices", 1), kwargs.get("num_nodes", 1)
            world = devices * nodes if isinstance(devices, int) and isinstance(nodes, int) else "auto"
            options = {"data_parallel_size": world, "tensor_parallel_size": 1, **(options or {})}
        kwargs["strategy"] = cls[name](**(options or {}))
    plugins = kwargs.get("plugins") or []
    kwargs["plugins"] = [*(plugins if isinstance(plugins, list) else [plugins]), AtomicCheckpointIO()]
    return kwargs


def submodule(module, path: str, required: bool = False):
    """The submodule of ``module`` at dotted ``path``, or None (``required``: a ``RecipeError`` naming the
    children there)."""
    target = module
    for i, name in enumerate(path.split(".")):
        children = dict(target.named_children())
        if name not in children:
            if not required:
                return None
            where = ".".join(path.split(".")[:i]) or "the LightningModule"
            raise RecipeError(f"compile: {path!r} names no submodule: {where} has {sorted(children)[:12]}")
        target = children[name]
    return target


# The speech LLM's decoder and the SRH's are one function to dynamo (transformers' output wrapper), and
# inductor's CPU reductions guard on batch x length crossing powers of two, so a fit whose head decodes a
# varying number of rows meets ten or so variants; at dynamo's default of 8 the later ones ran eagerly.
COMPILED_VARIANTS = 32


def compile_submodules(module, paths: Sequence[str]) -> None:
    """``torch.compile`` each submodule of ``module`` that a dotted path of ``paths`` names (each module
    of a ``ModuleList``), in place (``nn.Module.compile``: parameters, buffers and state-dict names do
    not change). Dynamo keeps up to ``COMPILED_VARIANTS`` compiled variants of a function."""
    import torch

    if paths:
        config = torch._dynamo.config
        config.recompile_limit = max(config.recompile_limit, COMPILED_VARIANTS)
    for path in paths:
        target = submodule(module, path, required=True)
        for part in target if isinstance(target, torch.nn.ModuleList) else [target]:
            part.compile(dynamic=True)


def build(recipe: dict[str, Any]):
    """A resolved recipe -> ``(LightningModule, LightningDataModule, lightning.Trainer)``."""
    import lightning as L

    module_cls, data_cls = STAGES[recipe["stage"]].classes()
    _check_kwargs(module_cls.__init__, recipe["model"], "model")
    _check_kwargs(data_cls.__init__, recipe["data"], "data")
    _check_kwargs(L.Trainer.__init__, recipe["trainer"], "trainer")
    if recipe.get("seed") is not None:
        L.seed_everything(recipe["seed"], workers=True)
    model = module_cls(**recipe["model"])
    targets = recipe.get("compile") or []
    if targets is True:  # the stage's own; a model without one of them (no audio tower) skips it
        targets = [t for t in STAGES[recipe["stage"]].compile_targets if submodule(model, t) is not None]
    compile_submodules(model, targets)
    data = data_cls(**recipe["data"])
    trainer = L.Trainer(**trainer_objects(recipe["trainer"]))
    return model, data, trainer


def fit(configs: Sequence[str | Path], overrides: Sequence[str] = ()):
    """Load, resolve and build a recipe, save its resolved copy, run ``Trainer.fit``; returns the trainer."""
    recipe_config = load_recipe(configs, overrides)
    recipe = resolve(recipe_config)
    try:
        model, data, trainer = build(recipe)
    except RecipeError:
        raise
    except ValueError as err:  # a constructor's own check of a recipe value
        raise RecipeError(str(err)) from err
    root = recipe["trainer"].get("default_root_dir")
    if root is not None and trainer.is_global_zero:
        Path(root).mkdir(parents=True, exist_ok=True)
        (Path(root) / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(recipe)), encoding="utf-8")
    trainer.fit(model, datamodule=data, ckpt_path=recipe.get("ckpt_path"))
    return trainer


def merge_main(argv: Sequence[str]) -> int:
    """``funaudiochat-train merge``: ``M = alpha * M1 + (1 - alpha) * M0`` over the shared LLM."""
    import argparse

    from .merge import merge_checkpoints

    parser = argparse.ArgumentParser(
        prog="funaudiochat-train merge",
        description="Core-Cocktail merge of the shared LLM: M = alpha * M1 + (1 - alpha) * M0; other modules "
        "keep M1's weights. Checkpoints are Hugging Face directories with safetensors weights.",
    )
    parser.add_argument("--base", required=True, help="M0: the original text LLM (or a Fun-Audio-Chat model)")
    parser.add_argument("--tuned", required=True, help="M1: the Fun-Audio-Chat model after stage 1")
    parser.add_argument("--alpha", type=float, default=0.5, help="weight of M1 (default 0.5)")
    parser.add_argument("--out", required=True, help="new directory for the merged model")
    args = parser.parse_args(argv)
    try:
        report = merge_checkpoints(args.base, args.tuned, args.out, args.alpha, progress=print)
    except ValueError as err:
        print(f"funaudiochat-train merge: error: {err}", file=sys.stderr)
        return 2
    print(f"{args.out}: {report.summary()}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "merge":
        return merge_main(argv[1:])
    try:
        command, configs, overrides = parse_args(argv)
        if command == "stages":
            for name, stage in STAGES.items():
                targets = ", ".join(stage.compile_targets) or "none"
                print(f"{name}\t{stage.description}\n\tcompile: true compiles: {targets}")
            return 0
        if command == "print-config":
            print(OmegaConf.to_yaml(load_recipe(configs, overrides)), end="")
            return 0
        fit(configs, overrides)
        return 0
    except UserInputError as err:
        if str(err) == "usage":
            print(__doc__, file=sys.stderr)
            return 0 if argv else 2
        print(f"funaudiochat-train: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
