"""The files a checkpoint folder holds for vLLM: the speech tokenizer's pad id is the model's speech pad,
and the feature extractor config gives the processor's own log-mel frames."""

import pytest
import torch
from funaudiochat.base.constants import SPEECH_BOS, SPEECH_EOS, SPEECH_PAD, SPEECH_VOCAB
from funaudiochat.drsr.serving_files import speech_token_name, write_serving_files
from funaudiochat.tokenizer import WhisperFrontend


def test_speech_tokenizer_spells_the_speech_vocabulary(tmp_path):
    from transformers import AutoTokenizer

    write_serving_files(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "speech_tokenizer")
    assert len(tokenizer) == SPEECH_VOCAB
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (
        SPEECH_PAD,
        SPEECH_BOS,
        SPEECH_EOS,
    )
    # what vLLM does with it: one pad per 25 Hz frame, padded to a multiple of the group size
    batch = tokenizer(["<|audio_pad|>" * 7], padding=True, pad_to_multiple_of=5, return_attention_mask=True)
    assert batch["input_ids"] == [[SPEECH_PAD] * 10] and batch["attention_mask"] == [[1] * 7 + [0] * 3]
    assert tokenizer.convert_ids_to_tokens([0, 6560, 6564]) == [
        "[AU0000]",
        "[AU6560]",
        "<|audio_unused_6564|>",
    ]
    with pytest.raises(ValueError, match="outside the speech vocabulary"):
        speech_token_name(SPEECH_VOCAB)


def test_feature_extractor_gives_the_processors_frames(tmp_path, speech_16k):
    from transformers import WhisperFeatureExtractor

    write_serving_files(tmp_path)
    extractor = WhisperFeatureExtractor.from_pretrained(tmp_path)
    wav = speech_16k[0][: 160 * 80 + 17]
    ref = extractor(wav.numpy(), sampling_rate=16000, padding="max_length", return_attention_mask=True)
    frames = int(ref["attention_mask"][0].sum())
    ours, lengths = WhisperFrontend(tail="zeros")(wav[None])
    assert int(lengths[0]) == frames == 81
    torch.testing.assert_close(
        ours[0], torch.as_tensor(ref["input_features"][0][:, :frames]), rtol=0, atol=1e-5
    )
