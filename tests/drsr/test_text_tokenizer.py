"""The trained stand-in for Qwen3's tokenizer: round trips, special tokens, save/load, chat template, ids."""

from __future__ import annotations

import unicodedata

import pytest
from funaudiochat.drsr.text_tokenizer import (
    AUDIO_TEMPLATE,
    CHAT_TEMPLATE,
    REQUIRED_TOKENS,
    SPECIAL_TOKENS,
    SpecialTokenIds,
    special_token_ids,
    train_text_tokenizer,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

CORPUS = [
    "What is two plus three? Two plus three is five.",
    "The capital of France is Paris, a city on the river Seine.",
    "Please tell me a short story about a brave little robot.",
    "Seven times eight is fifty six. 7 * 8 = 56.",
    "你好，今天天气怎么样？",
    'def add(a, b):\n    return a + b  # {"name": "add"}',
] * 10
VOCAB_SIZE = 400
QWEN_ENDOFTEXT_ID = 151643


@pytest.fixture(scope="module")
def tokenizer():
    return train_text_tokenizer(CORPUS, vocab_size=VOCAB_SIZE)


@pytest.mark.parametrize(
    "text",
    [
        "What is two plus three?",
        "  leading spaces, trailing tabs\t\n\nand blank lines\n",
        "ünïcödé, 中文, emoji 🎉, numbers 1234567890",
        'json {"base": 10, "height": 5}',
        "",
    ],
)
def test_round_trips_text(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=80))
def test_round_trips_any_text_after_nfc(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == unicodedata.normalize("NFC", text)


def test_every_special_token_is_one_id_in_official_order(tokenizer):
    base = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    for token in SPECIAL_TOKENS:
        ids = tokenizer.encode(token.content, add_special_tokens=False)
        assert ids == [base + token.official_id - QWEN_ENDOFTEXT_ID], token.content
    assert len(tokenizer) == base + len(SPECIAL_TOKENS)
    assert base <= VOCAB_SIZE


def test_special_tokens_are_never_split_inside_text(tokenizer):
    ids = special_token_ids(tokenizer)
    text = "a<|audio_bos|><|AUDIO|><|AUDIO|><|audio_eos|>b<|sil|><tool_call>{}</tool_call><|im_end|>"
    encoded = tokenizer.encode(text, add_special_tokens=False)
    assert encoded.count(ids.audio_token_index) == 2
    for token in ("<|audio_bos|>", "<|audio_eos|>", "<|sil|>", "<tool_call>", "</tool_call>", "<|im_end|>"):
        assert encoded.count(tokenizer.convert_tokens_to_ids(token)) == 1
    assert tokenizer.decode(encoded) == text


def test_pad_eos_bos_like_qwen3(tokenizer):
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.bos_token is None
    assert tokenizer.encode("hi") == tokenizer.encode("hi", add_special_tokens=False)  # nothing added


def test_skip_special_tokens_keeps_tool_call_tags(tokenizer):
    text = "<|audio_bos|><|sil|>ok <tool_call>\n{}\n</tool_call><|im_end|>"
    decoded = tokenizer.decode(tokenizer.encode(text), skip_special_tokens=True)
    assert decoded == "ok <tool_call>\n{}\n</tool_call>"
    assert special_token_ids(tokenizer).audio_token_index in tokenizer.all_special_ids


def test_training_is_deterministic(tokenizer):
    again = train_text_tokenizer(CORPUS, vocab_size=VOCAB_SIZE)
    assert again.get_vocab() == tokenizer.get_vocab()


def test_save_load_round_trip(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    for text in CORPUS[:6] + [AUDIO_TEMPLATE + "hello<|sil|><tool_call>"]:
        assert loaded.encode(text) == tokenizer.encode(text)
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert special_token_ids(loaded) == special_token_ids(tokenizer)
    assert (loaded.pad_token, loaded.eos_token, loaded.bos_token) == ("<|endoftext|>", "<|im_end|>", None)
    assert loaded.chat_template == CHAT_TEMPLATE


def test_chat_template_chatml_with_default_system_and_audio(tokenizer):
    messages = [
        {
            "role": "user",
            "content": [{"type": "audio", "audio": "question.wav"}, {"type": "text", "text": "Hi?"}],
        },
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": AUDIO_TEMPLATE},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|audio_bos|><|AUDIO|><|audio_eos|>Hi?<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n"
        "<|im_start|>user\n<|audio_bos|><|AUDIO|><|audio_eos|><|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_chat_template_keeps_given_system_and_no_generation_prompt(tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+3?"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+3?<|im_end|>\n"


def test_special_token_ids(tokenizer):
    ids = special_token_ids(tokenizer)
    assert isinstance(ids, SpecialTokenIds)
    named = [ids.audio_token_index, ids.audio_bos_index, ids.audio_eos_index, ids.sil_index, ids.im_start]
    assert tokenizer.convert_ids_to_tokens(named + [ids.im_end]) == [
        "<|AUDIO|>",
        "<|audio_bos|>",
        "<|audio_eos|>",
        "<|sil|>",
        "<|im_start|>",
        "<|im_end|>",
    ]
    assert ids.pad == ids.endoftext == tokenizer.pad_token_id
    assert ids.sil_index - ids.endoftext == 151673 - QWEN_ENDOFTEXT_ID


def test_special_token_ids_lists_missing_tokens():
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, show_progress=False))
    backend.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    plain = PreTrainedTokenizerFast(tokenizer_object=backend)
    with pytest.raises(ValueError) as info:
        special_token_ids(plain)
    message = str(info.value)
    for token in ("<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>", "<|sil|>"):
        assert token in message
    assert "<|im_start|>" not in message
    assert set(REQUIRED_TOKENS) >= {"<|AUDIO|>", "<|sil|>"}


def test_rejects_bad_training_arguments():
    with pytest.raises(ValueError, match="vocab_size"):
        train_text_tokenizer(CORPUS, vocab_size=100)
    with pytest.raises(ValueError, match="corpus is empty"):
        train_text_tokenizer(["", ""], vocab_size=300)
