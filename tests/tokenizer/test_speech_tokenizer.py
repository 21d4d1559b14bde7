"""SpeechTokenizer against the s3tokenizer package (V2 and V3): same weights, identical codes.

The reference models are the package's own classes at a reduced width (head size 64, as the package
hard-codes), with seeded random weights; the quantizer's projection is scaled up so that codes spread
over the codebook instead of sitting at the all-middle code 3280.
"""

import pytest
import s3tokenizer
import torch
from funaudiochat.tokenizer import (
    CODEBOOK_SIZE,
    SpeechTokenizer,
    SpeechTokenizerConfig,
    code_count,
    codes_to_levels,
    levels_to_codes,
)
from s3tokenizer.model_v2 import ModelConfig, S3TokenizerV2
from s3tokenizer.model_v3 import ModelConfigV3, S3TokenizerV3


def reference_model(version: str, layers: int, seed: int = 0):
    torch.manual_seed(seed)
    if version == "v2":
        model = S3TokenizerV2(
            "speech_tokenizer_v2_25hz", ModelConfig(n_audio_state=256, n_audio_head=4, n_audio_layer=layers)
        )
    else:
        model = S3TokenizerV3(
            "speech_tokenizer_v3_25hz", ModelConfigV3(n_audio_state=256, n_audio_head=4, n_audio_layer=layers)
        )
    with torch.no_grad():
        model.quantizer._codebook.project_down.weight.mul_(8.0)
    return model.eval()


@pytest.fixture(scope="module", params=[("v2", 2), ("v3", 3)], ids=["v2", "v3"])
def pair(request):
    ref = reference_model(*request.param)
    ours = SpeechTokenizer.from_s3tokenizer_state_dict(ref.state_dict()).eval()
    return ref, ours


def test_state_dict_keys_are_the_packages(pair):
    ref, ours = pair
    assert set(ours.state_dict()) == set(ref.state_dict())
    for k, v in ref.state_dict().items():
        assert ours.state_dict()[k].shape == v.shape, k


def test_identical_codes_unbatched(pair, speech_16k):
    ref, ours = pair
    distinct = set()
    for wav in speech_16k:
        mel = s3tokenizer.log_mel_spectrogram(wav).unsqueeze(0)
        ref_codes, ref_len = ref.quantize(mel, torch.tensor([mel.shape[-1]]))
        codes = ours.encode(wav)[0]
        assert codes.shape[0] == int(ref_len[0]) == code_count(wav.shape[0])
        assert torch.equal(codes, ref_codes[0, : ref_len[0]].long())
        distinct |= set(codes.tolist())
    assert len(distinct) > 40, "random weights gave too few distinct codes for a meaningful comparison"


def test_identical_codes_batched(pair, speech_16k):
    ref, ours = pair
    mels = [s3tokenizer.log_mel_spectrogram(w) for w in speech_16k]
    mel, mel_len = s3tokenizer.padding(mels)
    ref_codes, ref_len = ref.quantize(mel, mel_len)
    batch = ours.encode(speech_16k)
    alone = [ours.encode(w)[0] for w in speech_16k]
    for i, codes in enumerate(batch):
        assert torch.equal(codes, ref_codes[i, : ref_len[i]].long())
        assert torch.equal(codes, alone[i])
    padded, lengths = ours.quantize(mel, mel_len)
    assert torch.equal(lengths, ref_len.long())
    assert torch.equal(padded, ref_codes.long() * (torch.arange(padded.shape[1]) < lengths[:, None]))


def test_safetensors_round_trip(tmp_path, pair, speech_16k):
    _, ours = pair
    path = tmp_path / "tok.safetensors"
    ours.save_safetensors(path)
    again = SpeechTokenizer.from_safetensors(path)
    assert again.config == ours.config
    assert torch.equal(again.encode(speech_16k[0])[0], ours.encode(speech_16k[0])[0])


def test_bare_s3tokenizer_safetensors_loads(tmp_path, pair, speech_16k):
    from safetensors.torch import save_file

    ref, ours = pair
    path = tmp_path / "s3.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    loaded = SpeechTokenizer.from_safetensors(path)
    assert torch.equal(loaded.encode(speech_16k[2])[0], ours.encode(speech_16k[2])[0])


def test_bad_checkpoints_name_the_keys(tmp_path, pair):
    ref, _ = pair
    sd = dict(ref.state_dict())
    missing = dict(sd)
    del missing["encoder.blocks.1.attn.key.weight"]
    with pytest.raises(ValueError, match=r"missing keys: encoder\.blocks\.1\.attn\.key\.weight"):
        SpeechTokenizer.from_s3tokenizer_state_dict(missing)
    extra = dict(sd, **{"encoder.blocks.0.attn.extra": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unexpected keys: encoder\.blocks\.0\.attn\.extra"):
        SpeechTokenizer.from_s3tokenizer_state_dict(extra)
    bad_shape = dict(sd, **{"quantizer._codebook.project_down.bias": torch.zeros(9)})
    with pytest.raises(ValueError, match=r"mis-shaped keys: quantizer\._codebook\.project_down\.bias"):
        SpeechTokenizer.from_s3tokenizer_state_dict(bad_shape)
    with pytest.raises(ValueError, match="not an s3tokenizer"):
        SpeechTokenizer.from_s3tokenizer_state_dict({"foo": torch.zeros(1)})
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        SpeechTokenizer.from_safetensors(corrupt)


def test_full_size_configs_match_the_packages_shapes():
    """V2 (6 blocks) and V3 (12 blocks) at full width, built on the meta device (no memory)."""
    with torch.device("meta"):
        for ours_cfg, ref in [
            (SpeechTokenizerConfig.v2(), S3TokenizerV2("speech_tokenizer_v2_25hz")),
            (SpeechTokenizerConfig.v3(), S3TokenizerV3("speech_tokenizer_v3_25hz")),
        ]:
            ours = SpeechTokenizer(ours_cfg)
            ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
            assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == ref_shapes


def test_fsq_code_levels_round_trip():
    codes = torch.arange(CODEBOOK_SIZE)
    levels = codes_to_levels(codes)
    assert levels.shape == (CODEBOOK_SIZE, 8) and levels.min() == 0 and levels.max() == 2
    assert torch.equal(levels_to_codes(levels), codes)
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 6561\)"):
        codes_to_levels(torch.tensor([6561]))


def test_encode_rejects_bad_input():
    tok = SpeechTokenizer.random()
    with pytest.raises(ValueError, match="must be 1-D"):
        tok.encode(torch.zeros(2, 100))
    with pytest.raises(ValueError, match=r"mel 0 must be \[128, frames\]"):
        tok.encode_mel([torch.zeros(80, 10)])
    assert tok.encode([]) == []
    assert tok.encode(torch.zeros(100))[0].shape == (0,)
