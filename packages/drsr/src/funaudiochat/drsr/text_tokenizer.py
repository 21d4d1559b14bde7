"""The text side of Fun-Audio-Chat: Qwen3's special tokens, a trainable byte-level BPE stand-in, ids.

The official checkpoint uses the Qwen3 tokenizer (vocab 151936) extended with the audio tokens. That
tokenizer cannot be downloaded here, so tests and the demo model use ``train_text_tokenizer``: a byte-level
BPE trained on a given corpus, with Qwen3's pre-tokenizer split, the same special tokens in the same order,
pad/eos like Qwen3 and the ChatML chat template. Code that needs token ids asks ``special_token_ids``, so
it works unchanged with the real Qwen3 tokenizer.

Example:
    >>> tokenizer = train_text_tokenizer(["what is two plus three?", "five."], vocab_size=300)
    >>> ids = special_token_ids(tokenizer)
    >>> tokenizer.convert_ids_to_tokens(ids.audio_token_index)
    '<|AUDIO|>'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
AUDIO_TOKEN = "<|AUDIO|>"
AUDIO_BOS = "<|audio_bos|>"
AUDIO_EOS = "<|audio_eos|>"
AUDIO_PAD = "<|audio_pad|>"
SIL_TOKEN = "<|sil|>"
TOOL_CALL_START = "<tool_call>"
TOOL_CALL_END = "</tool_call>"

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
AUDIO_TEMPLATE = AUDIO_BOS + AUDIO_TOKEN + AUDIO_EOS


@dataclass(frozen=True)
class SpecialToken:
    """One added token: its text, its id in the official Fun-Audio-Chat vocabulary, and whether it is special.

    Non-special added tokens (``<tool_call>``, ``<think>``, ...) are still single ids and never split, but
    ``decode(..., skip_special_tokens=True)`` keeps them, as Qwen3's tokenizer does; the function-calling
    output is parsed from such a decode.
    """

    content: str
    official_id: int
    special: bool = True


# Qwen3's added tokens (151643-151668) followed by the Fun-Audio-Chat audio tokens (151669-151673), in id
# order. 151672 is not confirmed by any public source; ``<|audio_pad|>`` (the speech-vocabulary pad name)
# holds the slot so that every later id keeps its official offset from ``<|endoftext|>``.
SPECIAL_TOKENS: tuple[SpecialToken, ...] = (
    SpecialToken(ENDOFTEXT, 151643),
    SpecialToken(IM_START, 151644),
    SpecialToken(IM_END, 151645),
    SpecialToken("<|object_ref_start|>", 151646),
    SpecialToken("<|object_ref_end|>", 151647),
    SpecialToken("<|box_start|>", 151648),
    SpecialToken("<|box_end|>", 151649),
    SpecialToken("<|quad_start|>", 151650),
    SpecialToken("<|quad_end|>", 151651),
    SpecialToken("<|vision_start|>", 151652),
    SpecialToken("<|vision_end|>", 151653),
    SpecialToken("<|vision_pad|>", 151654),
    SpecialToken("<|image_pad|>", 151655),
    SpecialToken("<|video_pad|>", 151656),
    SpecialToken(TOOL_CALL_START, 151657, special=False),
    SpecialToken(TOOL_CALL_END, 151658, special=False),
    SpecialToken("<|fim_prefix|>", 151659, special=False),
    SpecialToken("<|fim_middle|>", 151660, special=False),
    SpecialToken("<|fim_suffix|>", 151661, special=False),
    SpecialToken("<|fim_pad|>", 151662, special=False),
    SpecialToken("<|repo_name|>", 151663, special=False),
    SpecialToken("<|file_sep|>", 151664, special=False),
    SpecialToken("<tool_response>", 151665, special=False),
    SpecialToken("</tool_response>", 151666, special=False),
    SpecialToken("<think>", 151667, special=False),
    SpecialToken("</think>", 151668, special=False),
    SpecialToken(AUDIO_TOKEN, 151669),
    SpecialToken(AUDIO_BOS, 151670),
    SpecialToken(AUDIO_EOS, 151671),
    SpecialToken(AUDIO_PAD, 151672),
    SpecialToken(SIL_TOKEN, 151673),
)

# The tokens the processor and the model cannot work without (see ``special_token_ids``).
REQUIRED_TOKENS: tuple[str, ...] = (ENDOFTEXT, IM_START, IM_END, AUDIO_TOKEN, AUDIO_BOS, AUDIO_EOS, SIL_TOKEN)

# Qwen2/Qwen3's pre-tokenizer split (before the byte-level mapping).
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# ChatML. ``content`` is a string, or a list of items: ``{"type": "text", "text": ...}`` renders its text,
# ``{"type": "audio", ...}`` (or any item with an ``audio`` / ``audio_url`` key) renders AUDIO_TEMPLATE.
# A conversation that does not open with a system turn gets DEFAULT_SYSTEM_PROMPT.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\n" + DEFAULT_SYSTEM_PROMPT + "<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}"
    "{% else %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'audio' or 'audio' in item or 'audio_url' in item %}"
    + AUDIO_TEMPLATE
    + "{% elif 'text' in item %}"
    "{{ item['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "<|im_start|>assistant\n"
    "{% endif %}"
)


def train_text_tokenizer(
    corpus: Iterable[str],
    vocab_size: int,
    *,
    min_frequency: int = 1,
    model_max_length: int = 131072,
) -> PreTrainedTokenizerFast:
    """Train a Qwen3-style byte-level BPE on ``corpus`` and register every token of ``SPECIAL_TOKENS``.

    Ids ``[0, n)`` are the BPE vocabulary (the 256 byte symbols, then merges; ``n <= vocab_size``, fewer
    when the corpus has too few distinct pairs); ``SPECIAL_TOKENS`` follow as ``n, n+1, ...`` in their
    official order, so ``id - id(<|endoftext|>)`` equals the official offset. ``len(tokenizer) ==
    n + len(SPECIAL_TOKENS)``. pad = ``<|endoftext|>``, eos = ``<|im_end|>``, no bos, nothing added on
    encode, right padding, chat template = ``CHAT_TEMPLATE``. Deterministic for a given corpus. Saves
    and loads with ``save_pretrained`` / ``AutoTokenizer.from_pretrained`` (no hub access).
    """
    if vocab_size < 257:
        raise ValueError(f"vocab_size must be at least 257 (256 byte symbols + 1 merge), got {vocab_size}")
    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    texts = [text for text in corpus if text]
    if not texts:
        raise ValueError("corpus is empty; give at least one non-empty string to train the tokenizer on")
    backend.train_from_iterator(texts, trainer=trainer)

    # One at a time, so the ids follow SPECIAL_TOKENS' order whatever the special flag.
    for token in SPECIAL_TOKENS:
        added = AddedToken(token.content, special=token.special, normalized=False)
        if token.special:
            backend.add_special_tokens([added])
        else:
            backend.add_tokens([added])

    # Like Qwen3's tokenizer_config, so that ``all_special_ids`` lists them.
    named = (IM_END, ENDOFTEXT)
    additional_special = [t.content for t in SPECIAL_TOKENS if t.special and t.content not in named]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        unk_token=None,
        bos_token=None,
        additional_special_tokens=additional_special,
        chat_template=CHAT_TEMPLATE,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    tokenizer.padding_side = "right"
    return tokenizer


@dataclass(frozen=True)
class SpecialTokenIds:
    """The token ids the processor and the model use (official checkpoint values in brackets).

    audio_token_index <|AUDIO|> [151669], audio_bos_index <|audio_bos|> [151670], audio_eos_index
    <|audio_eos|> [151671], sil_index <|sil|> [151673], im_start [151644], im_end (= eos) [151645], pad (the
    tokenizer's pad token, else <|endoftext|>) [151643], endoftext [151643].
    """

    audio_token_index: int
    audio_bos_index: int
    audio_eos_index: int
    sil_index: int
    im_start: int
    im_end: int
    pad: int
    endoftext: int


def special_token_ids(tokenizer: PreTrainedTokenizerBase) -> SpecialTokenIds:
    """Look up ``SpecialTokenIds`` in ``tokenizer``.

    Raises:
        ValueError: listing every token of ``REQUIRED_TOKENS`` that is missing from the vocabulary or
            that does not encode to a single id.
    """
    vocab = tokenizer.get_vocab()
    missing = []
    for token in REQUIRED_TOKENS:
        if token not in vocab or tokenizer.encode(token, add_special_tokens=False) != [vocab[token]]:
            missing.append(token)
    if missing:
        raise ValueError(
            f"the tokenizer {type(tokenizer).__name__} lacks the Fun-Audio-Chat special token(s) "
            f"{', '.join(missing)} (each must be in the vocabulary and encode to a single id); use the "
            "Fun-Audio-Chat Qwen3 tokenizer or one made by train_text_tokenizer"
        )
    pad = tokenizer.pad_token_id
    return SpecialTokenIds(
        audio_token_index=vocab[AUDIO_TOKEN],
        audio_bos_index=vocab[AUDIO_BOS],
        audio_eos_index=vocab[AUDIO_EOS],
        sil_index=vocab[SIL_TOKEN],
        im_start=vocab[IM_START],
        im_end=vocab[IM_END],
        pad=vocab[ENDOFTEXT] if pad is None else int(pad),
        endoftext=vocab[ENDOFTEXT],
    )
