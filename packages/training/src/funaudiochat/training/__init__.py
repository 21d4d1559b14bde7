"""funaudiochat.training: Lightning modules, data and OmegaConf recipes for the training stages.

Run a recipe with the ``funaudiochat-train`` command (``cli.py``):

    funaudiochat-train fit --config packages/training/recipes/vocoder_flow.yaml data.train=path/to/audio
    funaudiochat-train fit --config packages/training/recipes/vocoder_hift.yaml data.train=path/to/audio

A recipe's ``stage`` picks the LightningModule and LightningDataModule (``stages.py``); its ``model``,
``data`` and ``trainer`` sections are their constructor arguments and ``lightning.Trainer``'s. Stages:

- ``vocoder``: flow matching (tokens -> mel) and HiFT GAN (mel -> wave) training.

Shared helpers: ``config.build_config`` (recipe mapping -> config dataclass), ``optim.lr_multiplier`` (LR
schedules), ``weights.save_safetensors_atomic``.
"""
