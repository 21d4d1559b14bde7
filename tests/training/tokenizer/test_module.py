"""Tokenizer training learns, exports a SpeechTokenizer that gives the trained codes, and fails clearly."""

import json
import statistics

import lightning as L
import pytest
import torch
from funaudiochat.tokenizer import SpeechTokenizer, SpeechTokenizerConfig, load_audio
from funaudiochat.training.tokenizer import (
    CHARACTERS,
    TokenizerDataModule,
    TokenizerTrainingModule,
    collate_tokenizer,
)
from safetensors import safe_open

from .conftest import TRANSCRIPTS


def test_loss_falls_and_export_gives_the_trained_codes(transcribed_dir, tmp_path, quiet_trainer, recorder):
    L.seed_everything(0, workers=True)
    data = TokenizerDataModule(train=str(transcribed_dir), batch_size=4, cache_audio=True)
    export = tmp_path / "tok" / "speech_tokenizer.safetensors"
    module = TokenizerTrainingModule(
        tokenizer={"preset": "tiny"},
        head_width=128,
        head_dropout=0.0,
        lr=2e-3,
        weight_decay=0.0,
        schedule="constant",
        warmup_steps=5,
        export_path=str(export),
    )
    record = recorder("train/loss", "train/codes_used", "train/code_perplexity")
    trainer = L.Trainer(max_steps=40, callbacks=[record], **quiet_trainer)
    trainer.fit(module, datamodule=data)

    losses = record.values["train/loss"]
    assert len(losses) == 40 and all(map(torch.isfinite, torch.tensor(losses)))
    first, last = statistics.mean(losses[:5]), statistics.mean(losses[-5:])
    print(f"tokenizer CTC loss: first 5 steps {first:.3f}, last 5 steps {last:.3f}")
    assert last < 0.7 * first
    used = record.values["train/codes_used"]
    assert all(1 <= u <= 6561 for u in used)
    assert all(
        1.0 <= p <= u + 1e-3 for p, u in zip(record.values["train/code_perplexity"], used, strict=True)
    )

    # validation: CTC loss, greedy-decoding unit error rate, code usage
    val_data = TokenizerDataModule(train=str(transcribed_dir), val=str(transcribed_dir / "utt3.wav"))
    (metrics,) = L.Trainer(**quiet_trainer).validate(module, datamodule=val_data, verbose=False)
    assert metrics["val/loss"] > 0 and metrics["val/unit_error_rate"] >= 0 and metrics["val/codes_used"] >= 1

    # the exported file is a SpeechTokenizer (s3tokenizer keys, config in the metadata) ...
    with safe_open(str(export), "pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
    assert meta["format"] == "funaudiochat-speech-tokenizer"
    assert json.loads(meta["ctc_vocabulary"]) == list(CHARACTERS)
    assert keys == set(SpeechTokenizer(SpeechTokenizerConfig.tiny()).state_dict())
    tokenizer = SpeechTokenizer.from_safetensors(export)
    assert tokenizer.config == SpeechTokenizerConfig.tiny()

    # ... whose encode gives exactly the codes of the trained module's quantiser
    module.eval()
    waves = [load_audio(transcribed_dir / f"utt{i}.wav") for i in range(4)]
    batch = collate_tokenizer([data.train_set[i] for i in range(4)])
    mels = [batch["mel"][i, :, : int(n)] for i, n in enumerate(batch["mel_len"])]
    trained = module.encode_mel(mels)
    exported = tokenizer.encode(waves)
    for a, b in zip(trained, exported, strict=True):
        assert a.shape[0] > 20 and torch.equal(a, b)
    assert len(torch.cat(exported).unique()) > 1


def _batch(transcribed_dir, texts):
    data = TokenizerDataModule(train=str(transcribed_dir), shuffle=False)
    data.setup("fit")
    examples = [data.train_set[i] for i in range(len(texts))]
    for example, text in zip(examples, texts, strict=True):
        example["targets"] = torch.tensor(data.transcripts(text))
    return collate_tokenizer(examples)


def test_too_short_utterances(transcribed_dir, quiet_trainer, recorder, tmp_path):
    long_text = "what is two plus three and then seven times eight and fifty six more " * 2
    batch = _batch(transcribed_dir, [long_text, TRANSCRIPTS[1]])
    module = TokenizerTrainingModule(tokenizer={"preset": "tiny"}, vocabulary=list(CHARACTERS), head_width=32)
    with pytest.raises(
        ValueError, match=r"utt0\.wav: \d+ frames at 25 Hz .*transcript of 137 units .*short_policy=skip"
    ):
        module.training_step(batch, 0)

    # "skip": the loss comes from the utterances that fit, and the skipped ones are counted
    manifest = tmp_path / "m.jsonl"
    rows = [(transcribed_dir / "utt0.wav", long_text), (transcribed_dir / "utt1.wav", TRANSCRIPTS[1])]
    manifest.write_text("\n".join(json.dumps({"audio": str(a), "text": t}) for a, t in rows))
    data = TokenizerDataModule(train=str(manifest), batch_size=2, shuffle=False)
    module = TokenizerTrainingModule(tokenizer={"preset": "tiny"}, head_width=32, short_policy="skip")
    record = recorder("train/loss")
    trainer = L.Trainer(max_steps=2, callbacks=[record], **quiet_trainer)
    trainer.fit(module, datamodule=data)
    # one batch per epoch, one utterance skipped in each; the count is per epoch
    assert trainer.callback_metrics["train/skipped"] == 1.0 and len(record.values["train/loss"]) == 2


def test_checkpoint_restores_the_ctc_head(transcribed_dir, tmp_path, quiet_trainer):
    data = TokenizerDataModule(train=str(transcribed_dir), batch_size=4, units="phonemes")
    module = TokenizerTrainingModule(tokenizer={"preset": "tiny"}, head_width=32, lr=1e-3)
    settings = {**quiet_trainer, "enable_checkpointing": True, "default_root_dir": str(tmp_path)}
    trainer = L.Trainer(max_steps=1, **settings)
    trainer.fit(module, datamodule=data)
    checkpoint = next(tmp_path.rglob("*.ckpt"))
    restored = TokenizerTrainingModule.load_from_checkpoint(checkpoint, weights_only=True)
    assert restored.vocabulary == data.vocabulary
    for name, value in module.state_dict().items():
        assert torch.equal(restored.state_dict()[name], value), name
    # resuming the fit rebuilds the head from the data and checks it against the checkpoint
    resumed = TokenizerTrainingModule(tokenizer={"preset": "tiny"}, head_width=32, lr=1e-3)
    trainer = L.Trainer(max_steps=2, **{**settings, "default_root_dir": str(tmp_path / "resumed")})
    trainer.fit(resumed, datamodule=data, ckpt_path=checkpoint)
    assert trainer.global_step == 2


def test_module_errors(tmp_path, transcribed_dir, quiet_trainer):
    tiny = {"preset": "tiny"}
    with pytest.raises(ValueError, match="schedule"):
        TokenizerTrainingModule(tokenizer=tiny, schedule="steps")
    with pytest.raises(ValueError, match="safetensors"):
        TokenizerTrainingModule(tokenizer=tiny, export_path="tok.pt")
    with pytest.raises(ValueError, match="short_policy"):
        TokenizerTrainingModule(tokenizer=tiny, short_policy="truncate")
    with pytest.raises(ValueError, match="odd head_kernel"):
        TokenizerTrainingModule(tokenizer=tiny, head_kernel=4)
    with pytest.raises(ValueError, match="SpeechTokenizerConfig"):
        TokenizerTrainingModule(tokenizer={"layers": 2})
    with pytest.raises(ValueError, match="unknown SpeechTokenizerConfig preset"):
        TokenizerTrainingModule(tokenizer={"preset": "v4"})

    # init_weights: the file's config, or a clear mismatch
    SpeechTokenizer.random(SpeechTokenizerConfig.tiny(), seed=1).save_safetensors(
        tmp_path / "init.safetensors"
    )
    start = TokenizerTrainingModule(init_weights=str(tmp_path / "init.safetensors"), vocabulary=["a"])
    assert start.config == SpeechTokenizerConfig.tiny()
    with pytest.raises(ValueError, match="set model.tokenizer to null"):
        TokenizerTrainingModule(
            tokenizer={"preset": "tiny", "n_audio_layer": 3}, init_weights=str(tmp_path / "init.safetensors")
        )

    module = TokenizerTrainingModule(tokenizer=tiny, vocabulary=list(CHARACTERS), head_width=32)
    with pytest.raises(ValueError, match=r"mel 0 must be \[128, frames\]"):
        module([torch.zeros(80, 40)])
    loader = torch.utils.data.DataLoader([0])
    with pytest.raises(ValueError, match="CTC vocabulary is unknown"):
        L.Trainer(max_steps=1, **quiet_trainer).fit(
            TokenizerTrainingModule(tokenizer=tiny), train_dataloaders=loader
        )
    data = TokenizerDataModule(train=str(transcribed_dir), units="phonemes")
    with pytest.raises(ValueError, match="differs from the model's"):
        L.Trainer(max_steps=1, **quiet_trainer).fit(module, datamodule=data)
