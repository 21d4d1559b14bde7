"""funaudiochat.training: Lightning modules, data and OmegaConf recipes for the training stages.

Run a recipe with the ``funaudiochat-train`` command (``cli.py``); ``funaudiochat-train stages`` lists them:

    funaudiochat-train fit --config packages/training/recipes/tokenizer.yaml data.train=speech/
    funaudiochat-train fit --config packages/training/recipes/pre_alignment.yaml model.model=start/ \\
        data.processor=start/ data.train=spoken/train.jsonl
    funaudiochat-train fit --config packages/training/recipes/core_cocktail.yaml ...
    funaudiochat-train fit --config packages/training/recipes/vocoder_flow.yaml data.train=speech/
    funaudiochat-train merge --base M0 --tuned M1 --alpha 0.5 --out M

A recipe's ``stage`` picks the LightningModule and LightningDataModule (``stages.py``); its ``model``,
``data`` and ``trainer`` sections are their constructor arguments and ``lightning.Trainer``'s. Packages:

- ``data``: the official sharegpt JSONL and our manifest (validated up front), duration buckets, collation;
- ``tokenizer``: the speech tokenizer (encoder + FSQ) trained with CTC on transcripts;
- ``llm``: pre-alignment / SFT (``SpeechLLMModule``, LoRA optional), ``CoreCocktailModule``,
  ``MultiTaskDPOModule``;
- ``vocoder``: flow matching (tokens -> mel) and HiFT GAN (mel -> wave) training;
- ``merge``: the Core-Cocktail merge of checkpoints.

Shared helpers: ``config.build_config`` (recipe mapping -> config dataclass), ``optim.lr_multiplier`` (LR
schedules), ``weights.save_safetensors_atomic``, ``checkpoint_io.AtomicCheckpointIO``.
"""
