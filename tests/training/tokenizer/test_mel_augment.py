"""Log-mel augmentation: frequency warping and SpecAugment masks, wired into the tokenizer data module."""

import pytest
import torch
from funaudiochat.training.tokenizer import TokenizerDataModule
from funaudiochat.training.tokenizer.mel_augment import MelAugment, warp_frequency


def test_warp_frequency_moves_a_band_by_the_factor():
    mel = torch.zeros(128, 4)
    mel[40] = 1.0
    assert torch.equal(warp_frequency(mel, 1.0), mel)
    up = warp_frequency(mel, 1.25)  # bin f reads bin f / 1.25: the peak moves to 50
    assert int(up[:, 0].argmax()) == 50 and float(up[50, 0]) == pytest.approx(1.0)
    down = warp_frequency(mel, 0.8)  # bin 32 reads bin 40; past the top, the top bin repeats
    assert int(down[:, 0].argmax()) == 32
    ramp = torch.arange(128.0)[:, None].expand(128, 3)
    assert torch.allclose(warp_frequency(ramp, 0.5)[100], torch.full((3,), 127.0))
    with pytest.raises(ValueError, match="warp factor must be > 0"):
        warp_frequency(mel, 0.0)


def test_masks_fill_bands_and_spans_with_the_mean_and_stay_within_their_widths():
    torch.manual_seed(0)
    mel = torch.randn(128, 400) + 5.0
    masked_rows = masked_cols = 0
    for _ in range(20):
        out = MelAugment(freq_masks=1, freq_width=10)(mel)
        rows = (out != mel).all(dim=1)
        assert int(rows.sum()) <= 10 and torch.allclose(out[rows], mel.mean().expand_as(out[rows]))
        masked_rows += int(rows.sum())
        out = MelAugment(time_masks=1, time_width=30)(mel)
        cols = (out != mel).all(dim=0)
        assert int(cols.sum()) <= 30
        masked_cols += int(cols.sum())
    assert masked_rows > 0 and masked_cols > 0
    assert torch.equal(MelAugment()(mel), mel)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"warp": [1.1, 0.9]}, "warp must be"),
        ({"warp": [0.0, 1.0]}, "warp must be"),
        ({"freq_masks": 2}, "give masks and their width together"),
        ({"time_width": -1}, "time_width must be an integer"),
        ({"pitch": 2}, r"unknown mel_augment keys \['pitch'\]"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        MelAugment.from_dict(settings)


def test_the_data_module_augments_training_items_only(transcribed_dir):
    plain = TokenizerDataModule(train=str(transcribed_dir), shuffle=False)
    settings = {"warp": [1.2, 1.2], "freq_masks": 1, "freq_width": 8}
    folder = str(transcribed_dir)
    augmented = TokenizerDataModule(train=folder, val=folder, mel_augment=settings)
    plain.setup("fit")
    augmented.setup("fit")
    a, b = plain.train_set[0]["mel"], augmented.train_set[0]["mel"]
    assert b.shape == a.shape and not torch.equal(a, b)
    assert torch.equal(augmented.val_set[0]["mel"], a)
    with pytest.raises(ValueError, match="unknown mel_augment keys"):
        TokenizerDataModule(train=str(transcribed_dir), mel_augment={"width": 3})
