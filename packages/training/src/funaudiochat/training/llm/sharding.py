"""Sharded data parallelism (FSDP2) for the Fun-Audio-Chat stages: ``trainer.strategy=fsdp2``.

Lightning's ``ModelParallelStrategy`` gives the LightningModule a device mesh and calls its
``configure_model``, which shards the model here with ``torch.distributed.fsdp.fully_shard``: each decoder
layer of the shared LLM, of the Speech Refined Head and of the continuous audio encoder is one unit (its
parameters gathered just before it runs, freed after), and the root holds the rest (the embedding tables,
the tied speech-token table and SRH head together, the adapters). Every rank keeps 1/N of each parameter,
its gradient and its optimizer state. It runs on CPUs with gloo as on GPUs with NCCL; unlike Lightning's
``fsdp`` (FSDP1), which it refuses to run without a GPU.

At the end of ``fit`` the shards are gathered (``full_state_dict``: every rank takes part) into an
unsharded copy that rank 0 exports as usual.
"""

from __future__ import annotations

import torch
from torch import nn


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated layers of ``model`` (a ``FunAudioChatForConditionalGeneration``): the FSDP units."""
    units: list[nn.Module] = []
    llm = getattr(model, "language_model", None)
    if llm is not None:
        units += list(llm.model.layers)
    srh = getattr(model, "audio_invert_tower", None)
    if srh is not None:
        units += list(srh.crq_transformer.layers)
    tower = getattr(model, "continuous_audio_tower", None)
    if tower is not None and hasattr(tower, "layers"):
        units += list(tower.layers)
    return units


def shard_model(model: nn.Module, mesh) -> int:
    """``fully_shard`` every decoder layer of ``model``, then the model itself, over the 1-D ``mesh``;
    returns the number of layers sharded."""
    from torch.distributed.fsdp import fully_shard

    layers = decoder_layers(model)
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return len(layers)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole state dict of a sharded ``model`` on rank 0 (on the CPU; empty on the other ranks). Every
    rank must call it: the shards are gathered collectively."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
