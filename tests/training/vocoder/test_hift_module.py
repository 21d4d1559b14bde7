"""HiFT GAN training learns: on fixed espeak-ng segments the mel L1 loss falls within a few steps."""

import statistics

import lightning as L
import pytest
import torch
from funaudiochat.training.vocoder import HiFTModule, VocoderDataModule
from funaudiochat.vocoder import HiFTConfig, HiFTGenerator
from safetensors.torch import load_file


def test_hift_mel_loss_falls(speech_dir, tmp_path, quiet_trainer, recorder):
    L.seed_everything(0, workers=True)
    data = VocoderDataModule(
        train=[speech_dir / "utt0.wav", speech_dir / "utt1.wav"],
        task="hift",
        batch_size=2,
        segment_frames=32,
        shuffle=False,
        random_crop=False,
    )
    export = tmp_path / "hift.safetensors"
    # two periods and one resolution keep the test fast; the recipe test runs the full tiny discriminator
    small_d = {"preset": "tiny", "periods": [2, 5], "resolutions": [[512, 50, 240]]}
    module = HiFTModule(hift={"preset": "tiny"}, discriminator=small_d, lr=3e-4, export_path=str(export))
    keys = (
        "train/loss_mel",
        "train/loss_d",
        "train/loss_g",
        "train/loss_fm",
        "train/loss_adv",
        "train/loss_f0",
    )
    record = recorder(*keys)
    trainer = L.Trainer(max_steps=2 * 16, callbacks=[record], **quiet_trainer)  # 16 batches: G + D steps
    trainer.fit(module, datamodule=data)

    mel = record.values["train/loss_mel"]
    assert len(mel) == 16
    assert all(torch.isfinite(torch.tensor(v)).all() for v in record.values.values())
    # a GAN's mel loss jumps about from step to step (0.3 at this size): compare the first 4 steps with the
    # mean of the last 8 (seeded: 2.60 -> 2.10; the margin leaves room for float-rounding changes)
    first, last = statistics.mean(mel[:4]), statistics.mean(mel[-8:])
    assert last < 0.9 * first, [round(v, 2) for v in mel]

    hift = HiFTGenerator.from_state_dict(load_file(export), HiFTConfig.tiny())
    wave, _ = hift.inference(torch.randn(1, 80, 10))
    assert wave.shape == (1, 4800)


def test_generate_is_differentiable_and_f0_detached():
    torch.manual_seed(0)
    module = HiFTModule(hift={"preset": "tiny"}, discriminator={"preset": "tiny"})
    mel = torch.randn(1, 80, 12)
    wave, f0 = module.generate(mel, noise_seed=0)
    assert wave.shape == (1, 12 * 480) and f0.shape == (1, 12)
    wave.pow(2).mean().backward()
    f0_params = [p.grad for p in module.hift.f0_predictor.parameters()]
    assert all(g is None or (g == 0).all() for g in f0_params)  # the source passes no gradient to F0
    assert module.hift.conv_pre.parametrizations.weight.original1.grad.abs().sum() > 0
    f0.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.hift.f0_predictor.parameters())


def test_hift_module_errors():
    with pytest.raises(ValueError, match="does not fit HiFT"):
        HiFTModule(hift={"preset": "tiny"}, mel={"hop_length": 240})
    with pytest.raises(ValueError, match="loss weights"):
        HiFTModule(hift={"preset": "tiny"}, mel_weight=-1.0)
    with pytest.raises(ValueError, match="DiscriminatorConfig"):
        HiFTModule(hift={"preset": "tiny"}, discriminator={"preset": "small"})
