"""Fine-tuning Fun-Audio-Chat (text + speech losses) as a LightningModule: pre-alignment and SFT.

A batch is the keyword arguments of ``FunAudioChatForConditionalGeneration.forward`` in the official
training layout (``input_ids``, ``attention_mask``, ``labels``, ``speech_ids``, ``speech_attention_mask``,
``input_features``, ``feature_attention_mask``, ``feature_exist_mask``, ...); other keys (ids, durations)
are ignored. The loss is text CE + speech CE, as the official model computes it.

Which parts learn is a recipe setting:

- pre-alignment (paper §2.4 step 1): ``freeze: [language_model]``: the LLM stays as it is; the speech
  encoders, the grouping adapter and the Speech Refined Head learn;
- SFT / Core-Cocktail stages: nothing frozen (full fine-tuning, the default);
- ``lora: {r: 8, alpha: 16, target_modules: [q_proj, v_proj]}``: the LLM's base weights are frozen and
  low-rank adapters (peft) learn instead; the other modules still learn unless frozen. The exported
  checkpoint has the adapters merged into the LLM, so it is in the official layout.

The data's group size (25 Hz speech frames per ``<|AUDIO|>`` slot: ``data.group_size`` or its processor
folder's) must be the model's ``audio_config.group_size``: ``fit`` stops at its start when the datamodule
says otherwise, and at the first batch whose slot count fits another group size, naming both.

At the end of ``fit`` the model is written with ``save_pretrained`` (official layout, safetensors) to
``export_dir``, atomically (a temporary folder renamed into place), besides Lightning's checkpoints; the
processor and text-tokenizer files of the starting checkpoint folder (else of ``data.processor``) go
along, so the export is the next stage's ``model`` and ``data.processor`` at once.

Example:
    >>> module = SpeechLLMModule(model={"config": {"preset": "tiny"}}, freeze=["language_model"], lr=1e-3)
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from funaudiochat.base.atomic import atomic_folder
from funaudiochat.base.constants import GROUP_SIZE
from funaudiochat.base.rng import seeded
from funaudiochat.drsr import FunAudioChatConfig, FunAudioChatForConditionalGeneration
from funaudiochat.drsr.configuration import tiny_config_for  # noqa: F401  (re-exported for recipes and tests)
from funaudiochat.drsr.processing import PROCESSOR_CONFIG_NAME
from lightning.pytorch.utilities import rank_zero_info

from ..errors import UserInputError
from ..optim import adamw_with_schedule

MODULE_GROUPS = ("continuous_audio_tower", "audio_tower", "language_model", "audio_invert_tower")
LORA_DEFAULTS = {
    "r": 8,
    "alpha": 16,
    "dropout": 0.0,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
}


def build_model(spec: str | os.PathLike | Mapping[str, Any]) -> FunAudioChatForConditionalGeneration:
    """A Fun-Audio-Chat model from a checkpoint directory, or from a mapping:

    - ``pretrained``: a checkpoint directory (official layout);
    - ``config``: ``FunAudioChatConfig`` arguments; ``{"preset": "tiny", ...}`` calls
      ``FunAudioChatConfig.tiny(**rest)`` (tests, demo);
    - ``llm_from``: a Hugging Face causal-LM directory whose weights replace the LLM's (the text LLM M0 that
      pre-alignment starts from); every tensor must match in name and shape;
    - ``audio_encoder_from``: a continuous audio tower (safetensors of ``AudioEncoderModule.export``, the
      Whisper stand-in) whose weights replace ``continuous_audio_tower``'s; every tensor must match;
    - ``speech_embedding_std``: with ``config``, the speech-token table (``audio_tower.embed_tokens``: the
      speech grouping's input and, tied, the SRH's previous-token input and output head) drawn from
      N(0, std^2) instead of the config's ``initializer_range`` (the pad row stays zero). At 0.02 the
      table is ~20x smaller than the SRH's conditioning it is added to, and a freshly built SRH learns to
      ignore what it has just said (``tools/experiments/srh_probe.py``);
    - ``seed``: the seed of the random initialisation (default 0)."""
    if isinstance(spec, (str, os.PathLike)):
        spec = {"pretrained": str(spec)}
    spec = dict(spec)
    keys = ("pretrained", "config", "llm_from", "audio_encoder_from", "speech_embedding_std", "seed")
    unknown = sorted(set(spec) - set(keys))
    if unknown:
        raise ValueError(f"unknown model keys {unknown}; use {', '.join(keys)}")
    if ("pretrained" in spec) == ("config" in spec):
        raise ValueError("model needs exactly one of 'pretrained' (a checkpoint folder) or 'config'")
    std = spec.get("speech_embedding_std")
    if std is not None:
        if "config" not in spec:
            raise ValueError("speech_embedding_std is for a new model ('config'), not for 'pretrained'")
        if isinstance(std, bool) or not isinstance(std, (int, float)) or not std > 0:
            raise ValueError(f"speech_embedding_std must be a number > 0, got {std!r}")
    if "pretrained" in spec:
        model = FunAudioChatForConditionalGeneration.from_pretrained(spec["pretrained"])
    else:
        config = dict(spec["config"])
        preset = config.pop("preset", None)
        if preset == "tiny":
            config_obj = FunAudioChatConfig.tiny(**config)
        elif preset in (None, "default"):
            config_obj = FunAudioChatConfig(**config)
        else:
            raise ValueError(f"unknown model preset {preset!r}; use 'tiny' or 'default'")
        with seeded(int(spec.get("seed", 0))):
            model = FunAudioChatForConditionalGeneration(config_obj)
            if std is not None:
                init_speech_embeddings(model, float(std))
    if spec.get("llm_from"):
        load_llm(model, spec["llm_from"])
    if spec.get("audio_encoder_from"):
        from funaudiochat.base.weights import load_state_dict_strict, read_safetensors

        state, metadata = read_safetensors(spec["audio_encoder_from"])
        load_state_dict_strict(
            model.continuous_audio_tower, state, f"audio_encoder_from {spec['audio_encoder_from']}"
        )
        from .audio_encoder import GROUPED_IN_LLM_SPACE

        if metadata.get("grouped_output") == GROUPED_IN_LLM_SPACE:
            start_adapter_as_identity(model, metadata, spec["audio_encoder_from"])
    return model


def init_speech_embeddings(model: FunAudioChatForConditionalGeneration, std: float) -> None:
    """Redraw the speech-token table (``audio_tower.embed_tokens``, tied to the SRH's ``lm_head``) from
    N(0, ``std``^2), its padding row zero."""
    table = model.audio_tower.embed_tokens
    with torch.no_grad():
        table.weight.normal_(0.0, std)
        if table.padding_idx is not None:
            table.weight[table.padding_idx].zero_()


def start_adapter_as_identity(model: FunAudioChatForConditionalGeneration, metadata: dict, source) -> None:
    """A tower trained so that its groups are LLM input embeddings (``AudioEncoderModule`` with
    ``text_lm``) keeps that meaning: ``continual_output_matching`` starts as the identity."""
    adapter = model.audio_tower
    size = int(metadata.get("group_size", adapter.group_size))
    if adapter.grouping != "mean" or size != adapter.group_size:
        raise ValueError(
            f"audio_encoder_from {source}: trained for mean groups of {size}, but the model groups "
            f"{adapter.group_size} frames by {adapter.grouping!r}"
        )
    with torch.no_grad():
        adapter.continual_output_matching.weight.copy_(torch.eye(adapter.hidden_size))


def load_llm(model: FunAudioChatForConditionalGeneration, directory: str | os.PathLike) -> None:
    """Replace the LLM's weights by those of a causal-LM checkpoint (safetensors), strictly."""
    from ..merge import Checkpoint, base_key

    source = Checkpoint(directory, "llm_from")
    target = model.language_model.state_dict()
    problems = []
    for name, tensor in target.items():
        key = base_key("language_model." + name, source)
        if key is None:
            problems.append(f"missing {name}")
        elif tuple(source[key].shape) != tuple(tensor.shape):
            problems.append(f"{name}: {list(source[key].shape)} vs {list(tensor.shape)}")
    if problems:
        raise ValueError(
            f"{directory}: the causal LM does not fit the model's LLM: " + "; ".join(problems[:10])
        )
    with torch.no_grad():
        for name, tensor in target.items():
            tensor.copy_(source[base_key("language_model." + name, source)])


def group_size_mismatch(model_size: int, data_size: int, source: str) -> UserInputError:
    """The error for a model and data grouped differently (``source`` says where the data's size came
    from)."""
    return UserInputError(
        f"group size mismatch: the model's audio_config.group_size is {model_size} (25 Hz speech frames per "
        f"LLM slot, the LLM at {25 / model_size:g} Hz) but {source} is {data_size} (the LLM at "
        f"{25 / data_size:g} Hz); set data.group_size: {model_size} or build the model with "
        f"group_size {data_size}"
    )


def batch_group_sizes(batch: Mapping[str, Any], audio_token_index: int, limit: int = 25) -> list[int] | None:
    """The group sizes k in 1..``limit`` for which the batch's ``<|AUDIO|>`` count equals
    ``sum(ceil(speech frames / k))`` over its speech rows (``speech_attention_mask``), or None when the batch
    has no speech rows."""
    ids, mask = batch.get("input_ids"), batch.get("speech_attention_mask")
    if not isinstance(ids, torch.Tensor) or not isinstance(mask, torch.Tensor) or not mask.numel():
        return None
    slots = int((ids == audio_token_index).sum())
    frames = mask.sum(-1)
    return [k for k in range(1, limit + 1) if int((-(-frames // k)).sum()) == slots]


MODEL_FILES = ("config.json", "generation_config.json")


def save_checkpoint_atomic(
    model: FunAudioChatForConditionalGeneration,
    directory: str | os.PathLike,
    companions: str | os.PathLike | Sequence[str | os.PathLike | None] | None = None,
) -> Path:
    """``model.save_pretrained`` into a temporary folder beside ``directory``, then renamed into place (an
    existing folder is replaced only once the new one is complete). ``companions``: a checkpoint or
    processor folder, or several (a file of an earlier one wins), whose other files (processor, text
    tokenizer, chat template) are copied along, so the result is complete; a copied
    ``processor_config.json`` gets the model's group size (``audio_group_size``: a k = 1 model trained from
    a k = 5 folder exports a k = 1 processor)."""
    directory = Path(directory)
    folders = [companions] if isinstance(companions, (str, os.PathLike)) else list(companions or [])
    with atomic_folder(directory) as staging:
        for folder in folders:
            if folder is None or not Path(folder).is_dir():
                continue
            for item in Path(folder).iterdir():
                weights = item.suffix == ".safetensors" or item.name.endswith(".index.json")
                taken = (staging / item.name).exists()
                if item.is_file() and not weights and item.name not in MODEL_FILES and not taken:
                    shutil.copy2(item, staging / item.name)
        _set_processor_group_size(staging / PROCESSOR_CONFIG_NAME, model.group_size)
        model.save_pretrained(staging)
    return directory


def _set_processor_group_size(path: Path, group_size: int) -> None:
    """Rewrite the processor config at ``path`` (when there) with ``audio_group_size = group_size``."""
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(config, dict) and config.get("audio_group_size", GROUP_SIZE) != group_size:
        config["audio_group_size"] = group_size
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def add_lora(language_model: torch.nn.Module, options: Mapping[str, Any]) -> None:
    """Put peft LoRA adapters into ``language_model`` in place; only they stay trainable in it."""
    from peft import LoraConfig, inject_adapter_in_model

    opts = {**LORA_DEFAULTS, **dict(options)}
    unknown = sorted(set(opts) - set(LORA_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown lora keys {unknown}; use {sorted(LORA_DEFAULTS)}")
    if opts["r"] < 1:
        raise ValueError(f"lora.r must be >= 1, got {opts['r']}")
    config = LoraConfig(
        r=opts["r"],
        lora_alpha=opts["alpha"],
        lora_dropout=opts["dropout"],
        target_modules=list(opts["target_modules"]),
    )
    layers = {name.rpartition(".")[2] for name, _ in language_model.named_modules()}
    missing = sorted(set(config.target_modules) - layers)
    if missing:
        raise ValueError(f"lora.target_modules {missing} matched no layer of the LLM")
    inject_adapter_in_model(config, language_model)
    adapted = [n for n, _ in language_model.named_parameters() if "lora_" in n]
    if not adapted:
        raise ValueError(f"lora.target_modules {opts['target_modules']} matched no layer of the LLM")
    for name, param in language_model.named_parameters():
        param.requires_grad = "lora_" in name


def merge_lora(language_model: torch.nn.Module) -> None:
    """Fold every LoRA adapter into its base layer and put the plain layer back (official layout)."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(language_model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = language_model.get_submodule(parent_name) if parent_name else language_model
            setattr(parent, child, module.get_base_layer())


class SpeechLLMModule(L.LightningModule):
    """Trains a ``FunAudioChatForConditionalGeneration`` (see the module docstring).

    Args:
        model: see ``build_model``.
        freeze: module groups (``continuous_audio_tower``, ``audio_tower``, ``language_model``,
            ``audio_invert_tower``) or parameter-name prefixes that do not learn.
        lora: LoRA options for the LLM (``r``, ``alpha``, ``dropout``, ``target_modules``) or None.
        lr, min_lr_ratio, schedule, warmup_steps, total_steps, weight_decay, betas: AdamW and its schedule
            (``schedule``: constant, linear, cosine, inverse_sqrt; ``total_steps`` defaults to the trainer's).
        export_dir: where ``save_pretrained`` writes the trained model at the end of ``fit`` (None: not).
        prev_code_noise: share of the SRH's previous codes replaced by FSQ neighbours while training
            (``code_noise``; 0: none).
    """

    def __init__(
        self,
        model: str | Mapping[str, Any] = "???",
        freeze: Sequence[str] = (),
        lora: Mapping[str, Any] | None = None,
        lr: float = 1e-5,
        min_lr_ratio: float = 0.1,
        schedule: str = "cosine",
        warmup_steps: int = 0,
        total_steps: int | None = None,
        weight_decay: float = 0.0,
        betas: Sequence[float] = (0.9, 0.999),
        export_dir: str | None = None,
        prev_code_noise: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.model = build_model(model).train()
        if prev_code_noise:
            from .code_noise import NeighbourNoise

            self.model.prev_code_transform = NeighbourNoise(prev_code_noise)
        names = [n for n, _ in self.model.named_parameters()]
        for item in freeze:
            if not any(n == item or n.startswith(item + ".") for n in names):
                raise ValueError(f"freeze: {item!r} names no parameter; groups are {list(MODULE_GROUPS)}")
        for name, param in self.model.named_parameters():
            param.requires_grad = not any(name == f or name.startswith(f + ".") for f in freeze)
        if lora is not None:
            if "language_model" in freeze:
                raise ValueError("lora adapts the LLM; do not also freeze language_model")
            add_lora(self.model.language_model, lora)
        if not any(p.requires_grad for p in self.model.parameters()):
            raise ValueError("every parameter is frozen: nothing would learn")
        self._forward_args = set(inspect.signature(self.model.forward).parameters) - {"kwargs"}
        self._batch_checked = False
        self._sharded = False

    def configure_model(self) -> None:
        """With ``trainer.strategy=fsdp2`` (a device mesh from Lightning), shard the model (``sharding``)."""
        mesh = getattr(self, "_device_mesh", None)
        if mesh is None or self._sharded:
            return
        if self.hparams.lora is not None:
            raise UserInputError("lora with trainer.strategy=fsdp2 is not supported; use ddp")
        from .sharding import shard_model

        mesh = mesh["data_parallel"] if "data_parallel" in (mesh.mesh_dim_names or ()) else mesh
        units = shard_model(self.model, mesh)
        self._sharded = True
        rank_zero_info(f"fsdp2: {units} decoder layers and the model's root sharded over {mesh.size()} ranks")

    # -- data agreement -------------------------------------------------------------------------------------

    def on_fit_start(self) -> None:
        self.check_data_group_size()

    def check_data_group_size(self) -> None:
        """The trainer's datamodule, when it states a ``group_size``, must group as the model does: else a
        ``UserInputError`` naming both."""
        trainer = self._trainer
        data = getattr(trainer, "datamodule", None) if trainer is not None else None
        size = getattr(data, "group_size", None)
        if size is not None and int(size) != self.model.group_size:
            raise group_size_mismatch(self.model.group_size, int(size), "the data's group_size")

    def check_batch_group_size(self, batch: Mapping[str, Any]) -> None:
        """A batch's ``<|AUDIO|>`` slot count must be ``sum(ceil(frames / k))`` for the model's k; when it
        fits another group size instead, a ``UserInputError`` naming both (any other mismatch is left to
        the model's own check)."""
        k = self.model.group_size
        fits = batch_group_sizes(batch, self.model.config.audio_token_index, max(25, k))
        if fits and k not in fits:
            raise group_size_mismatch(
                k, fits[0], "the batch's group size (from its <|AUDIO|> slots per speech frame)"
            )

    # -- steps ----------------------------------------------------------------------------------------------

    def model_inputs(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in batch.items() if k in self._forward_args}

    def forward(self, batch: Mapping[str, Any]):
        return self.model(**self.model_inputs(batch))

    def _log_losses(self, out, prefix: str, batch_size: int) -> None:
        self.log(f"{prefix}/loss", out.loss, prog_bar=True, batch_size=batch_size)
        for name in ("text_loss", "speech_loss"):
            value = getattr(out, name)
            if value is not None:
                self.log(f"{prefix}/{name}", value, batch_size=batch_size)

    def training_step(self, batch, batch_idx):
        if not self._batch_checked:
            self.check_batch_group_size(batch)
            self._batch_checked = True
        out = self(batch)
        if out.loss is None:
            raise ValueError("the batch has no labels: training needs 'labels' (-100 outside the answers)")
        self._log_losses(out, "train", batch["input_ids"].shape[0])
        return out.loss

    def validation_step(self, batch, batch_idx):
        self._log_losses(self(batch), "val", batch["input_ids"].shape[0])

    # -- optimisation ---------------------------------------------------------------------------------------

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def configure_optimizers(self):
        return adamw_with_schedule(self, self.trainable_parameters(), self.hparams)

    # -- export ---------------------------------------------------------------------------------------------

    def export(
        self, directory: str | os.PathLike, model: FunAudioChatForConditionalGeneration | None = None
    ) -> Path:
        """Write the model (or ``model``: the same weights unsharded) in the official layout (LoRA adapters
        merged into the LLM first)."""
        model = model or self.model
        if self.hparams.lora is not None:
            merge_lora(model.language_model)
        spec = self.hparams.model
        source = spec if isinstance(spec, (str, os.PathLike)) else dict(spec).get("pretrained")
        return save_checkpoint_atomic(model, directory, companions=[source, self._data_processor_folder()])

    def _data_processor_folder(self) -> str | None:
        """The processor folder of the trainer's datamodule (``data.processor``), if any: the export's
        processor when the model's own folder has none (a model built from a config)."""
        datamodule = getattr(getattr(self, "_trainer", None), "datamodule", None)
        hparams = getattr(datamodule, "hparams", None)
        return hparams.get("processor") if hparams is not None else None

    def on_train_end(self) -> None:
        if self.hparams.export_dir is None:
            return
        whole = None  # the model itself, or with sharded weights (fsdp2) an unsharded copy on rank 0
        if self._sharded:
            from .sharding import full_state_dict

            state = full_state_dict(self.model)  # every rank takes part in the gathering
            if self.trainer.is_global_zero:
                whole = FunAudioChatForConditionalGeneration(self.model.config)
                whole.load_state_dict(state)
        if self.trainer.is_global_zero:
            self.export(self.hparams.export_dir, whole)
