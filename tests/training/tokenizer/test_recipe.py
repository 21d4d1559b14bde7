"""The ``tokenizer.yaml`` recipe runs through ``funaudiochat-train fit`` and exports a SpeechTokenizer."""

from pathlib import Path

import torch
from funaudiochat.tokenizer import SpeechTokenizer, SpeechTokenizerConfig, load_audio
from funaudiochat.training import cli

RECIPE = Path(__file__).resolve().parents[3] / "packages" / "training" / "recipes" / "tokenizer.yaml"
QUIET = ["trainer.logger=false", "trainer.enable_checkpointing=false", "trainer.enable_progress_bar=false"]


def test_fit_tokenizer_recipe(transcribed_dir, tmp_path):
    root = tmp_path / "tok"
    argv = [
        "fit",
        "--config",
        str(RECIPE),
        f"data.train={transcribed_dir}",
        f"trainer.default_root_dir={root}",
    ]
    argv += ["trainer.max_steps=2", "data.batch_size=2", "trainer.accelerator=cpu", *QUIET]
    argv += [f"data.val={transcribed_dir / 'utt3.wav'}", "trainer.val_check_interval=1"]
    assert cli.main(argv) == 0
    tokenizer = SpeechTokenizer.from_safetensors(root / "speech_tokenizer.safetensors")
    assert tokenizer.config == SpeechTokenizerConfig.tiny()
    codes = tokenizer.encode(load_audio(transcribed_dir / "utt0.wav"))[0]
    assert codes.dtype == torch.long and codes.min() >= 0 and codes.max() < 6561
    saved = (root / "config.yaml").read_text()
    assert "stage: tokenizer" in saved and str(transcribed_dir) in saved


def test_recipe_errors(capsys):
    assert cli.main(["fit", "--config", str(RECIPE)]) == 2
    assert "needs a value for data.train" in capsys.readouterr().err
    assert cli.main(["fit", "--config", str(RECIPE), "data.train=x", "model.tokenizer.preset=huge"]) == 2
    assert "preset" in capsys.readouterr().err
    assert cli.main(["stages"]) == 0
    assert "tokenizer\t" in capsys.readouterr().out
    assert cli.main(["print-config", "--config", str(RECIPE), "model.tokenizer.preset=v3"]) == 0
    assert "preset: v3" in capsys.readouterr().out
