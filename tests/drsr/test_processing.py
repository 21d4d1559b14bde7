"""FunAudioChatProcessor: chat text, placeholder expansion, padding, audio tensors and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from funaudiochat.drsr.processing import (
    FunAudioChatProcessor,
    SpokenReply,
    audio_slot_count,
    speech_frame_count,
)
from funaudiochat.drsr.text_tokenizer import AUDIO_TEMPLATE, special_token_ids, train_text_tokenizer
from funaudiochat.tokenizer import WhisperFrontend, load_audio
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

CORPUS = [
    "What is two plus three? Two plus three is five.",
    "The capital of France is Paris.",
    "Please help me transcribe the audio.",
    "You are a helpful assistant.",
] * 10
SR = 16000


@pytest.fixture(scope="module")
def tokenizer():
    return train_text_tokenizer(CORPUS, vocab_size=350)


@pytest.fixture(scope="module")
def processor(tokenizer):
    return FunAudioChatProcessor(tokenizer)


@pytest.fixture(scope="module")
def ids(tokenizer):
    return special_token_ids(tokenizer)


def noise(seconds: float, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(int(round(seconds * SR)), generator=generator)


def user_prompt(processor, user_content: str = AUDIO_TEMPLATE) -> str:
    return processor.apply_chat_template([{"role": "user", "content": user_content}])


# ------------------------------------------------------------------------------------------ frame counts


def test_frame_count_is_the_official_float_formula():
    assert speech_frame_count(SR) == 25
    assert speech_frame_count(SR * 7) == 175
    assert speech_frame_count(639) == 0 and speech_frame_count(640) == 1
    # int(18560 / 16000 * 25) is 28: the float product is just below 29; the official code gives 28 too.
    assert speech_frame_count(18560) == 28
    assert [audio_slot_count(n) for n in (1, 4, 5, 6, 10, 11)] == [1, 1, 1, 2, 2, 3]


@settings(max_examples=200, deadline=None)
@given(num_samples=st.integers(min_value=1, max_value=SR * 600))
def test_frame_count_is_within_one_of_exact(num_samples):
    exact = num_samples * 25 // SR
    assert speech_frame_count(num_samples) in (exact, exact - 1)


# ---------------------------------------------------------------------------------------- chat template


def test_apply_chat_template_with_audio_item_and_system_prompt(processor):
    wav = noise(1.0)
    messages = [
        {"role": "user", "content": [{"type": "audio", "audio": wav}, {"type": "text", "text": "Hi"}]}
    ]
    text = processor.apply_chat_template(messages, system_prompt="You are asked to generate text tokens.")
    assert text == (
        "<|im_start|>system\nYou are asked to generate text tokens.<|im_end|>\n"
        "<|im_start|>user\n<|audio_bos|><|AUDIO|><|audio_eos|>Hi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert processor.audios_from_messages(messages) == [wav]
    by_url = [{"role": "user", "content": [{"type": "audio", "audio_url": "a.wav"}, {"audio": "b.wav"}]}]
    assert processor.audios_from_messages(by_url) == ["a.wav", "b.wav"]
    assert processor.apply_chat_template(by_url).count(AUDIO_TEMPLATE) == 2
    default = processor.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=False)
    expected = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    assert default == expected


def test_end_to_end_from_messages_with_espeak_file(processor, tokenizer, ids, speech_dir):
    path = speech_dir / "utt0.wav"
    messages = [{"role": "user", "content": [{"type": "audio", "audio": str(path)}]}]
    batch = processor(processor.apply_chat_template(messages), audio=processor.audios_from_messages(messages))
    wav = load_audio(path)
    frames = int(wav.shape[0] / SR * 25)
    assert int((batch["input_ids"] == ids.audio_token_index).sum()) == math.ceil(frames / 5)
    assert batch["speech_attention_mask"].sum().item() == frames
    text = tokenizer.decode(batch["input_ids"][0])
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert text.endswith("<|audio_eos|><|im_end|>\n<|im_start|>assistant\n")
    from_array = processor(processor.apply_chat_template(messages), audio=[wav])
    for key in batch:
        assert torch.equal(batch[key], from_array[key]), key


# ------------------------------------------------------------------------------------------- expansion


@settings(max_examples=25, deadline=None)
@given(num_samples=st.integers(min_value=640, max_value=SR * 6))
def test_placeholder_expansion_for_any_duration(processor, ids, num_samples):
    batch = processor(user_prompt(processor), audio=[np.zeros(num_samples, dtype=np.float32)])
    frames = speech_frame_count(num_samples)
    slots = math.ceil(frames / 5)
    row = batch["input_ids"][0].tolist()
    first = row.index(ids.audio_token_index)
    assert row[first - 1] == ids.audio_bos_index
    assert row[first : first + slots] == [ids.audio_token_index] * slots
    assert row[first + slots] == ids.audio_eos_index
    assert row.count(ids.audio_token_index) == slots
    assert batch["speech_ids"].shape == (1, 5 * slots)
    assert batch["speech_attention_mask"].sum().item() == frames
    # the official WhisperFeatureExtractor's frames: ceil(len / 160)
    assert batch["input_features"].shape == (1, 128, math.ceil(num_samples / 160))
    assert batch["feature_attention_mask"].sum().item() == math.ceil(num_samples / 160)


def test_bare_placeholder_is_wrapped_and_wrapped_one_is_not_doubled(processor):
    expanded = processor.expand_audio_placeholders(
        ["A<|AUDIO|>B", "<|audio_bos|><|AUDIO|><|audio_eos|>", "<|AUDIO|><|AUDIO|>"], [2, 1, 3, 1]
    )
    assert expanded == [
        "A<|audio_bos|><|AUDIO|><|AUDIO|><|audio_eos|>B",
        "<|audio_bos|><|AUDIO|><|audio_eos|>",
        "<|audio_bos|><|AUDIO|><|AUDIO|><|AUDIO|><|audio_eos|><|audio_bos|><|AUDIO|><|audio_eos|>",
    ]


def test_half_wrapped_placeholder_gets_the_missing_side(processor):
    expanded = processor.expand_audio_placeholders(
        ["<|audio_bos|><|AUDIO|>x", "y<|AUDIO|><|audio_eos|>"], [2, 1]
    )
    assert expanded == [
        "<|audio_bos|><|AUDIO|><|AUDIO|><|audio_eos|>x",
        "y<|audio_bos|><|AUDIO|><|audio_eos|>",
    ]


def test_audios_map_to_placeholders_in_order_across_the_batch(processor, ids):
    texts = ["<|AUDIO|> then <|AUDIO|>", "<|audio_bos|><|AUDIO|><|audio_eos|> last"]
    batch = processor(texts, audio=[noise(1.0, 1), noise(2.0, 2), noise(3.0, 3)], padding_side="right")
    audio_id, bos_id = ids.audio_token_index, ids.audio_bos_index
    runs = []
    for row in batch["input_ids"].tolist():
        run = 0
        for token in row + [bos_id]:
            if token == audio_id:
                run += 1
            elif run:
                runs.append(run)
                run = 0
    assert runs == [5, 10, 15]
    assert batch["speech_attention_mask"].sum(1).tolist() == [25, 50, 75]
    assert batch["speech_ids"].shape == (3, 75)


# --------------------------------------------------------------------------------------------- padding


@pytest.mark.parametrize("side", ["left", "right"])
def test_batched_padding(processor, ids, side):
    texts = [
        user_prompt(processor),
        user_prompt(processor, AUDIO_TEMPLATE + "\nPlease help me transcribe the audio."),
    ]
    batch = processor(texts, audio=[noise(2.0), noise(0.5)], padding_side=side)
    input_ids, mask = batch["input_ids"], batch["attention_mask"]
    assert input_ids.shape == mask.shape and input_ids.dtype == mask.dtype == torch.long
    lengths = mask.sum(1).tolist()
    assert lengths[0] != lengths[1]
    width = input_ids.shape[1]
    for i, n in enumerate(lengths):
        pad = slice(0, width - n) if side == "left" else slice(n, width)
        real = slice(width - n, width) if side == "left" else slice(0, n)
        assert mask[i, pad].sum() == 0 and mask[i, real].all()
        assert (input_ids[i, pad] == ids.pad).all()
        single = processor(texts[i], audio=[noise(2.0) if i == 0 else noise(0.5)])["input_ids"][0]
        assert torch.equal(input_ids[i, real], single)
    if side == "left":
        assert mask[:, -1].all()
    else:
        assert mask[:, 0].all()


def test_default_padding_side_is_left_and_configurable(tokenizer):
    assert FunAudioChatProcessor(tokenizer).padding_side == "left"
    right = FunAudioChatProcessor(tokenizer, padding_side="right")
    batch = right(["<|im_start|>user\nhi<|im_end|>\n", "<|im_start|>user\nhello there<|im_end|>\n"])
    assert batch["attention_mask"][:, 0].all()
    with pytest.raises(ValueError, match="padding_side"):
        FunAudioChatProcessor(tokenizer, padding_side="middle")


# ------------------------------------------------------------------------------------ audio tensors


def test_speech_and_feature_tensors(processor):
    waves = [noise(1.3, 1), noise(0.7, 2)]
    batch = processor("<|AUDIO|><|AUDIO|>", audio=waves)
    frames = [speech_frame_count(w.shape[0]) for w in waves]
    assert frames == [32, 17]
    speech_ids, speech_mask = batch["speech_ids"], batch["speech_attention_mask"]
    assert speech_ids.shape == speech_mask.shape == (2, 35)
    assert (speech_ids == 6563).all() and speech_ids.dtype == torch.long
    assert speech_mask[0].tolist() == [1] * 32 + [0] * 3
    assert speech_mask[1].tolist() == [1] * 17 + [0] * 18
    exist = batch["feature_exist_mask"]
    assert exist.dtype == torch.bool and exist.tolist() == [True, True]

    features, feature_mask = batch["input_features"], batch["feature_attention_mask"]
    assert features.shape == (2, 128, 130) and features.dtype == torch.float32
    assert feature_mask.sum(1).tolist() == [130, 70]
    expected, _ = WhisperFrontend(tail="zeros").batch(waves)  # the official extractor's frames
    torch.testing.assert_close(features, expected)
    assert (features[1, :, 70:] == 0).all()


def test_spoken_reply_takes_the_training_layout(processor, ids):
    """An earlier assistant turn's speech: BOS delay + codes as its speech row, no features, its text in
    text_ids (the layout of the training data); user audio beside it keeps the processor's layout."""
    wave = noise(0.7, 2)
    reply = SpokenReply([5, 6, 7], "Two plus three is five.")
    messages = [
        {"role": "user", "content": [{"type": "audio", "audio": wave}]},
        {"role": "assistant", "content": [{"type": "audio", "audio": reply}]},
        {"role": "user", "content": "What is two plus three?"},
    ]
    text = processor.apply_chat_template(messages)
    audios = processor.audios_from_messages(messages)
    assert audios[1] is reply
    batch = processor(text, audio=audios)
    assert batch["speech_ids"].shape == (2, 20)  # 17 user frames; 10 BOS + 3 codes -> both to 20
    assert batch["speech_ids"][1].tolist() == [6561] * 10 + [5, 6, 7] + [6563] * 7
    assert batch["speech_attention_mask"].sum(1).tolist() == [17, 13]
    assert batch["feature_exist_mask"].tolist() == [True, False]
    assert batch["input_features"].shape[0] == 1 and batch["feature_attention_mask"].shape[0] == 1
    assert batch["text_attention_mask"].tolist() == [False, True]
    want = processor.tokenizer("Two plus three is five.", add_special_tokens=False)["input_ids"]
    assert batch["text_ids"][1, : len(want)].tolist() == want
    assert (batch["text_ids"][0] == ids.pad).all() and (batch["text_ids"][1, len(want) :] == ids.pad).all()
    slots = int((batch["input_ids"] == ids.audio_token_index).sum())
    assert slots == audio_slot_count(17) + audio_slot_count(13)

    alone = processor("<|AUDIO|>", audio=reply)  # replies alone: no feature tensors
    assert "input_features" not in alone and alone["feature_exist_mask"].tolist() == [False]
    with pytest.raises(ValueError, match="at least one speech code"):
        SpokenReply([], "x")
    with pytest.raises(ValueError, match=r"0\.\.6560, got \[6561\]"):
        SpokenReply([1, 6561], "x")
    with pytest.raises(ValueError, match="text must be a string"):
        SpokenReply([1], None)


def test_custom_speech_pad_id_and_group_size(tokenizer, ids):
    processor = FunAudioChatProcessor(tokenizer, group_size=4, speech_pad_id=7)
    batch = processor("<|AUDIO|>", audio=[noise(1.0)])
    assert batch["speech_ids"].shape == (1, 28) and (batch["speech_ids"] == 7).all()
    assert int((batch["input_ids"] == ids.audio_token_index).sum()) == 7


def test_text_only_call_has_no_audio_tensors(processor):
    batch = processor(user_prompt(processor, "What is two plus three?"))
    assert set(batch.keys()) == {"input_ids", "attention_mask"}


def test_sampling_rate_resamples_arrays(processor, ids):
    batch = processor("<|AUDIO|>", audio=[np.zeros(44100 * 2, dtype=np.float32)], sampling_rate=44100)
    assert batch["speech_attention_mask"].sum().item() == 50
    assert batch["input_features"].shape[-1] == 200


# --------------------------------------------------------------------------------------------- errors


def test_error_placeholder_count_mismatch(processor):
    with pytest.raises(ValueError, match=r"found 2 <\|AUDIO\|> placeholder\(s\).*received 1 audio"):
        processor(["<|AUDIO|>", "<|AUDIO|>"], audio=[noise(1.0)])
    with pytest.raises(ValueError, match=r"found 1 <\|AUDIO\|> placeholder\(s\).*received 0 audio"):
        processor("<|AUDIO|>")


def test_error_empty_text(processor):
    with pytest.raises(ValueError, match="text 0 is empty"):
        processor("")
    with pytest.raises(ValueError, match="empty list"):
        processor([])


def test_error_audio_that_load_audio_rejects(processor, tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(ValueError, match=r"audio 1: .*missing\.wav: file not found"):
        processor("<|AUDIO|><|AUDIO|>", audio=[noise(1.0), str(missing)])
    with pytest.raises(ValueError, match="audio 0: .*NaN"):
        processor("<|AUDIO|>", audio=[np.full(16000, np.nan, dtype=np.float32)])


def test_error_audio_shorter_than_one_speech_frame(processor):
    with pytest.raises(ValueError, match="audio 0: .*shorter than one 40 ms speech frame"):
        processor("<|AUDIO|>", audio=[np.zeros(600, dtype=np.float32)])


def test_error_waveform_not_1d(processor):
    with pytest.raises(ValueError, match=r"audio 0: expected a 1-D waveform, got shape \(2, 16000\)"):
        processor("<|AUDIO|>", audio=[np.zeros((2, 16000), dtype=np.float32)])


def test_error_tokenizer_without_special_tokens():
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, show_progress=False))
    with pytest.raises(ValueError, match=r"lacks the Fun-Audio-Chat special token\(s\) <\|endoftext\|>"):
        FunAudioChatProcessor(PreTrainedTokenizerFast(tokenizer_object=backend))


# ------------------------------------------------------------------------------------- decode / save


def test_decode_passthroughs(processor, tokenizer):
    batch = processor(["<|im_start|>user\nhi<|im_end|>", "What is two plus three?"], padding_side="right")
    assert processor.batch_decode(batch["input_ids"], skip_special_tokens=True) == [
        "user\nhi",
        "What is two plus three?",
    ]
    assert processor.decode(batch["input_ids"][1]) == tokenizer.decode(batch["input_ids"][1])


def test_a_folder_without_a_text_tokenizer_is_refused_by_name(tokenizer, tmp_path):
    FunAudioChatProcessor(tokenizer).save_pretrained(tmp_path / "ok")
    (tmp_path / "weights_only").mkdir()
    (tmp_path / "weights_only" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"weights_only: no text tokenizer \(none of tokenizer.json, "):
        FunAudioChatProcessor.from_pretrained(tmp_path / "weights_only")
    assert FunAudioChatProcessor.from_pretrained(tmp_path / "ok").group_size == 5


def test_save_load_round_trip(tokenizer, tmp_path):
    processor = FunAudioChatProcessor(tokenizer, group_size=5, speech_pad_id=6563, padding_side="right")
    processor.save_pretrained(tmp_path)
    loaded = FunAudioChatProcessor.from_pretrained(tmp_path)
    assert (loaded.group_size, loaded.speech_pad_id, loaded.padding_side) == (5, 6563, "right")
    assert loaded.chat_template == processor.chat_template
    text, audio = user_prompt(processor), [noise(1.5)]
    a, b = processor(text, audio=audio), loaded(text, audio=audio)
    for key in a:
        assert torch.equal(a[key], b[key]), key
