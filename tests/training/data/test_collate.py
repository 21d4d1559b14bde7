"""Encoding and collation: the official training layout, agreement with the processor, and a tiny
FunAudioChatForConditionalGeneration that trains on the batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from funaudiochat.drsr import FunAudioChatForConditionalGeneration
from funaudiochat.drsr.processing import speech_frame_count
from funaudiochat.tokenizer import load_audio
from funaudiochat.training.data import (
    AssistantSpeech,
    Collator,
    Conversation,
    ConversationEncoder,
    DataValidationError,
    DurationBucketSampler,
    SpokenChatDataset,
    Turn,
    UserAudio,
    model_inputs,
)
from funaudiochat.training.llm.module import tiny_config_for
from torch.utils.data import DataLoader

TEMPLATE = "<|audio_bos|><|AUDIO|><|audio_eos|>"
SYSTEM = "You are asked to generate both text and speech tokens at the same time."


def user_audio(path, question=""):
    return UserAudio(str(path), num_frames=speech_frame_count(load_audio(path).shape[0]), ref_text=question)


def answer(text, n, seed):
    codes = np.random.default_rng(seed).integers(0, 6561, n)
    return AssistantSpeech(text, codes)


@pytest.fixture(scope="module")
def conversations(speech_dir):
    single = Conversation(
        [Turn("user", TEMPLATE), Turn("assistant", TEMPLATE)],
        [
            user_audio(speech_dir / "utt0.wav", "What is two plus three?"),
            answer("Two plus three is five.", 23, 0),
        ],
        system=SYSTEM,
        source="single",
    )
    multi = Conversation(
        [
            Turn("user", "Hi! " + TEMPLATE),
            Turn("assistant", TEMPLATE),
            Turn("user", "Thanks!"),
            Turn("assistant", "You are welcome."),
        ],
        [user_audio(speech_dir / "utt1.wav"), answer("The capital of France is Paris.", 31, 1)],
        source="multi",
    )
    return [single, multi]


@pytest.fixture(scope="module")
def encoder(processor):
    return ConversationEncoder(processor, keep_waveforms=True)


@pytest.fixture(scope="module")
def tiny_model(processor):
    torch.manual_seed(0)
    return FunAudioChatForConditionalGeneration(tiny_config_for(processor))


def test_prompt_and_features_match_the_processor(conversations, encoder, processor):
    conv = conversations[0]
    item = encoder.encode(conv)
    prompt = processor.apply_chat_template([{"role": "user", "content": TEMPLATE}], system_prompt=SYSTEM)
    reference = processor(prompt, audio=[conv.audios[0].path])
    n = reference["input_ids"].shape[1]
    assert torch.equal(item.input_ids[:n], reference["input_ids"][0])
    assert (item.labels[:n] == -100).all() and (item.labels[n:] != -100).all()
    frames = int(reference["feature_attention_mask"].sum())
    torch.testing.assert_close(item.features[0], reference["input_features"][0, :, :frames])
    assert torch.equal(item.speech_ids[0], reference["speech_ids"][0][: conv.audios[0].num_frames])


def test_reply_layout_is_the_official_one(conversations, encoder, processor):
    ids = processor.token_ids
    conv = conversations[0]
    item = encoder.encode(conv)
    reply = item.labels[item.labels != -100].tolist()
    slots = conv.audios[1].num_slots(5)  # ceil((10 + 23) / 5) = 7
    newline = processor.tokenizer.encode("\n", add_special_tokens=False)
    assert slots == 7
    assert (
        reply
        == [ids.audio_bos_index]
        + [ids.audio_token_index] * slots
        + [ids.audio_eos_index, ids.im_end]
        + newline
    )
    assert item.speech_ids[1][:10].tolist() == [6561] * 10
    assert item.speech_ids[1][10:].tolist() == conv.audios[1].codes.tolist()
    assert item.text_ids[1].tolist() == processor.tokenizer.encode(
        conv.audios[1].text, add_special_tokens=False
    )
    assert item.text_mask == [False, True] and item.feature_exist == [True, False]
    audio_slots = int((item.input_ids == ids.audio_token_index).sum())
    assert audio_slots == conv.audios[0].num_slots(5) + slots


def test_multi_turn_labels_cover_every_reply(conversations, encoder, processor):
    item = encoder.encode(conversations[1])
    trained = processor.tokenizer.decode(item.labels[item.labels != -100])
    assert trained.count("<|im_end|>") == 2 and "You are welcome." in trained
    assert "Thanks!" not in trained and "Hi!" not in trained


def test_collated_batch_shapes_masks_and_padding(conversations, encoder, processor):
    items = [encoder.encode(c) for c in conversations]
    batch = Collator.for_processor(processor, return_waveforms=True)(items)
    lengths = [len(i.input_ids) for i in items]
    b, s = batch["input_ids"].shape
    assert (b, s) == (2, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    short = int(np.argmin(lengths))
    assert (batch["input_ids"][short, lengths[short] :] == processor.token_ids.pad).all()
    assert (batch["labels"][short, lengths[short] :] == -100).all()
    assert batch["position_ids"][short].tolist() == list(range(lengths[short])) + [0] * (s - lengths[short])
    n, t = batch["speech_ids"].shape
    assert n == 4 and t % 5 == 0
    assert batch["speech_attention_mask"].sum(1).tolist() == [len(r) for i in items for r in i.speech_ids]
    assert (batch["speech_ids"][batch["speech_attention_mask"] == 0] == 6563).all()
    assert batch["feature_exist_mask"].tolist() == [True, False, True, False]
    assert batch["text_attention_mask"].tolist() == [False, True, False, True]
    assert batch["input_features"].shape[:2] == (2, 128)
    assert batch["feature_attention_mask"].sum(1).tolist() == [f.shape[-1] for i in items for f in i.features]
    assert batch["waveform_lengths"].tolist() == [w.shape[0] for i in items for w in i.waveforms]
    assert set(model_inputs(batch)) == set(batch) - {"waveforms", "waveform_lengths"}


def test_tiny_model_trains_on_a_collated_batch(conversations, encoder, processor, tiny_model):
    batch = model_inputs(Collator.for_processor(processor)([encoder.encode(c) for c in conversations]))
    out = tiny_model(**batch)
    assert torch.isfinite(out.loss) and out.speech_loss is not None and out.speech_loss > 0
    out.loss.backward()
    grad = tiny_model.audio_invert_tower.pre_matching.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_a_written_conversation_trains_beside_spoken_ones(conversations, encoder, processor, tiny_model):
    """A conversation with no audio at all (a written question answered in text: Core-Cocktail's text
    replay) shares a batch with spoken ones; its reply is learnt, and no speech rows are made for it."""
    written = Conversation(
        [Turn("user", "What is two plus three?"), Turn("assistant", "Five.")],
        [],
        system=SYSTEM,
        source="text",
    )
    item = encoder.encode(written)
    batch = Collator.for_processor(processor)([encoder.encode(c) for c in conversations] + [item])
    assert batch["input_ids"].shape[0] == 3
    labels = batch["labels"][2]
    learnt = processor.tokenizer.decode(labels[labels >= 0])
    assert "Five." in learnt and "two plus three" not in learnt
    tiny_model.zero_grad()
    out = tiny_model(**model_inputs(batch))
    assert torch.isfinite(out.loss)
    out.loss.backward()


def test_dataset_sampler_loader_end_to_end(conversations, encoder, processor, tiny_model):
    dataset = SpokenChatDataset(conversations * 3, encoder)
    sampler = DurationBucketSampler(dataset.durations, max_seconds=12.0, max_batch_size=4, seed=1)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=Collator.for_processor(processor))
    seen = 0
    with torch.no_grad():
        for batch in loader:
            seen += batch["input_ids"].shape[0]
            assert torch.isfinite(tiny_model(**model_inputs(batch)).loss)
    assert seen == 6


def test_max_length_is_checked_up_front(conversations, processor):
    encoder = ConversationEncoder(processor)
    longest = max(encoder.sequence_length(c) for c in conversations)
    SpokenChatDataset(conversations, encoder, max_length=longest)
    with pytest.raises(DataValidationError, match=r"multi: input_ids: \d+ tokens, longer than max_length="):
        SpokenChatDataset(conversations, encoder, max_length=longest - 1)


def test_speech_without_codes_needs_a_cache(conversations, encoder):
    lacking = Conversation(
        conversations[0].turns,
        [conversations[0].audios[0], AssistantSpeech("x", None, ref_path="/data/a.wav")],
        source="lacking",
    )
    with pytest.raises(ValueError, match=r"1 conversations have assistant speech without codes \(lacking\)"):
        SpokenChatDataset([lacking], encoder)
