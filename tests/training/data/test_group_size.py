"""The training data path at another group size than the official 5: k = 1 puts the LLM at 25 Hz (one
``<|AUDIO|>`` slot per speech frame, one reply-text token per slot, the SRH making one code per LLM step).
Encoding, collation and the model's label layout at k = 1; a tiny k = 1 model trained through
``SpeechLLMModule`` + ``SpokenChatDataModule`` from a saved k = 5 processor folder; generation with the
result; and the errors when the model and the data group differently."""

from __future__ import annotations

import json
import math

import lightning as L
import numpy as np
import pytest
import torch
from funaudiochat.drsr import DecodingConfig, FunAudioChatForConditionalGeneration, SamplingConfig
from funaudiochat.drsr.configuration import tiny_config_for
from funaudiochat.drsr.processing import FunAudioChatProcessor, speech_frame_count
from funaudiochat.training.data import (
    AssistantSpeech,
    Collator,
    Conversation,
    ConversationEncoder,
    Turn,
    UserAudio,
    model_inputs,
)
from funaudiochat.training.errors import UserInputError
from funaudiochat.training.llm import SpeechLLMModule
from funaudiochat.training.llm.data import SpokenChatDataModule

TEMPLATE = "<|audio_bos|><|AUDIO|><|audio_eos|>"
SYSTEM = "You are asked to generate both text and speech tokens at the same time."
USER_SAMPLES = 7680  # 0.48 s at 16 kHz: 12 speech frames
ANSWER = "Two plus three is five."
NUM_CODES = 13  # with the 10 BOS of the delay: 23 frames, not a multiple of 5


@pytest.fixture(scope="module")
def processor_k1(text_tokenizer):
    return FunAudioChatProcessor(text_tokenizer, group_size=1, padding_side="right")


@pytest.fixture
def conversation(make_wav):
    wav = make_wav("question.wav", USER_SAMPLES)
    codes = np.random.default_rng(0).integers(0, 6561, NUM_CODES)
    return Conversation(
        [Turn("user", TEMPLATE), Turn("assistant", TEMPLATE)],
        [
            UserAudio(
                str(wav), num_frames=speech_frame_count(USER_SAMPLES), ref_text="What is two plus three?"
            ),
            AssistantSpeech(ANSWER, codes),
        ],
        system=SYSTEM,
        source="k1",
    )


def test_records_count_one_slot_per_frame_at_k1(conversation):
    user, reply = conversation.audios
    assert user.num_frames == 12 and reply.num_frames == 23
    assert (user.num_slots(1), reply.num_slots(1)) == (12, 23)
    assert (user.num_slots(5), reply.num_slots(5)) == (3, 5)  # ceil(12 / 5), ceil(23 / 5): the official
    assert AssistantSpeech("x", None, ref_path="a.wav").num_slots(1) is None


def test_encoding_at_k1_gives_one_slot_per_frame(conversation, processor, processor_k1):
    ids = processor_k1.token_ids
    item = ConversationEncoder(processor_k1, compute_features=False).encode(conversation)
    official = ConversationEncoder(processor, compute_features=False).encode(conversation)
    audio = ids.audio_token_index

    # one slot per 25 Hz frame: 12 for the question, 10 + 13 for the reply
    assert int((item.input_ids == audio).sum()) == 12 + 23
    assert int((official.input_ids == audio).sum()) == 3 + 5
    # everything but the slot runs is the same as at k = 5
    assert (
        item.input_ids[item.input_ids != audio].tolist()
        == official.input_ids[official.input_ids != audio].tolist()
    )
    assert (
        item.labels[item.input_ids != audio].tolist() == official.labels[official.input_ids != audio].tolist()
    )

    # the reply: <|audio_bos|> <|AUDIO|> x 23 <|audio_eos|> <|im_end|> \n, trained; the prompt is not
    newline = processor_k1.tokenizer.encode("\n", add_special_tokens=False)
    reply = item.labels[item.labels != -100].tolist()
    assert reply == [ids.audio_bos_index] + [audio] * 23 + [ids.audio_eos_index, ids.im_end] + newline
    prompt = item.input_ids[item.labels == -100].tolist()
    start = prompt.index(ids.audio_bos_index)
    assert prompt[start : start + 14] == [ids.audio_bos_index] + [audio] * 12 + [ids.audio_eos_index]

    # speech rows and text do not depend on k
    assert item.speech_ids[0].tolist() == [6563] * 12
    assert item.speech_ids[1].tolist() == [6561] * 10 + conversation.audios[1].codes.tolist()
    assert item.text_ids[1].tolist() == processor_k1.tokenizer.encode(ANSWER, add_special_tokens=False)
    for a, b in zip(item.speech_ids + item.text_ids, official.speech_ids + official.text_ids, strict=True):
        assert torch.equal(a, b)

    # collation pads speech rows to a multiple of the processor's group size (1: the longest row)
    batch = Collator.for_processor(processor_k1)([item])
    assert batch["speech_ids"].shape == (2, 23)
    assert Collator.for_processor(processor)([official])["speech_ids"].shape == (2, 25)


def test_model_lays_text_and_speech_one_per_slot_at_k1(conversation, processor_k1):
    torch.manual_seed(0)
    model = FunAudioChatForConditionalGeneration(tiny_config_for(processor_k1))
    assert model.group_size == 1
    encoder = ConversationEncoder(processor_k1)
    batch = model_inputs(Collator.for_processor(processor_k1)([encoder.encode(conversation)]))
    merged = model.merge_inputs(
        batch["input_ids"],
        batch["speech_ids"],
        batch["speech_attention_mask"],
        batch["input_features"],
        batch["feature_attention_mask"],
        batch["feature_exist_mask"],
        batch["text_ids"],
        batch["text_attention_mask"],
    )
    text, speech = model._build_labels(
        batch["labels"], merged.audio_slots, merged.valid, merged.mid_speech_labels, merged.mid_text_labels
    )
    assert speech.shape == batch["labels"].shape  # S * k speech positions with k = 1
    ids = processor_k1.token_ids
    slots = merged.audio_slots[0].nonzero().flatten()
    user, reply = slots[:12], slots[12:]
    answer = processor_k1.tokenizer.encode(ANSWER, add_special_tokens=False)
    # reply slots: one text token each, then <|sil|>; one speech label each (the delay's BOS, then codes)
    assert text[0, reply].tolist() == answer + [ids.sil_index] * (23 - len(answer))
    assert speech[0, reply].tolist() == [6561] * 10 + conversation.audios[1].codes.tolist()
    # the slot after the reply's last: <|audio_eos|> in text, speech EOS (6562)
    eos = int(reply[-1]) + 1
    assert int(batch["labels"][0, eos]) == ids.audio_eos_index and int(speech[0, eos]) == 6562
    # user slots train nothing
    assert (text[0, user] == -100).all() and (speech[0, user] == -100).all()

    out = model(**batch)
    assert torch.isfinite(out.loss) and out.speech_loss is not None and out.text_loss is not None


# ---------------------------------------------------------------------------------------- training


class Recorder(L.Callback):
    def __init__(self, audio_token_index):
        self.audio, self.losses, self.slots, self.frames = audio_token_index, [], [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.slots.append(int((batch["input_ids"] == self.audio).sum()))
        self.frames.append(int(batch["speech_attention_mask"].sum()))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


@pytest.fixture
def k1_checkpoint(tmp_path, make_wav, official_record, write_jsonl, processor):
    """A folder with a tiny k = 1 model beside the saved official (k = 5) processor, and a sharegpt file of
    two spoken exchanges."""
    folder = tmp_path / "ckpt"
    processor.save_pretrained(folder)
    torch.manual_seed(0)
    FunAudioChatForConditionalGeneration(tiny_config_for(processor, group_size=1)).save_pretrained(folder)
    records = []
    for i, (samples, n, answer) in enumerate(
        [(9600, 12, ANSWER), (12800, 16, "The capital of France is Paris.")]
    ):
        wav = make_wav(f"q{i}.wav", samples, seed=i)
        codes = np.random.default_rng(i).integers(0, 6561, n)
        records.append(official_record(wav, speech_frame_count(samples), codes, answer))
    return folder, write_jsonl("train.jsonl", records)


def trainer_for(steps, tmp_path, callbacks=()):
    return L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        callbacks=list(callbacks),
        default_root_dir=tmp_path,
    )


def test_a_k1_model_trains_and_generates_from_the_k5_processor_folder(k1_checkpoint, tmp_path):
    folder, train = k1_checkpoint
    L.seed_everything(0)
    out_dir = tmp_path / "out"
    module = SpeechLLMModule(model=str(folder), lr=3e-3, schedule="constant", export_dir=str(out_dir))
    data = SpokenChatDataModule(
        train=str(train), processor=str(folder), group_size=1, max_seconds=None, max_batch_size=2
    )
    assert data.group_size == 1 and module.model.group_size == 1
    rec = Recorder(module.model.config.audio_token_index)
    trainer_for(10, tmp_path, [rec]).fit(module, datamodule=data)

    assert data.processor.group_size == 1
    assert rec.slots == rec.frames  # one <|AUDIO|> slot per speech frame
    assert all(math.isfinite(x) for x in rec.losses) and len(rec.losses) == 10
    assert sum(rec.losses[-2:]) / 2 < 0.85 * sum(rec.losses[:2]) / 2, rec.losses

    # the export carries a k = 1 processor next to the k = 1 model
    assert json.loads((out_dir / "processor_config.json").read_text())["audio_group_size"] == 1
    assert json.loads((folder / "processor_config.json").read_text())["audio_group_size"] == 5
    processor = FunAudioChatProcessor.from_pretrained(out_dir)
    model = FunAudioChatForConditionalGeneration.from_pretrained(str(out_dir)).eval()
    assert processor.group_size == model.group_size == 1

    # generation: one text token and one speech code per LLM step
    prompt = processor.apply_chat_template([{"role": "user", "content": TEMPLATE}], system_prompt=SYSTEM)
    wav = torch.from_numpy((0.1 * np.random.default_rng(3).standard_normal(8000)).astype(np.float32))
    inputs = dict(processor(prompt, audio=[wav]))
    assert int((inputs["input_ids"] == model.config.audio_token_index).sum()) == speech_frame_count(8000)
    steps = list(model.stream(inputs, DecodingConfig(max_new_tokens=12, seed=0)))
    assert all(s.speech_tokens.shape == (1, 1) for s in steps)
    greedy = DecodingConfig(max_new_tokens=12, speech=SamplingConfig(do_sample=False))
    out = model.generate(inputs, greedy)
    spoken = int(sum(bool(s.speech_valid[0]) for s in model.stream(inputs, greedy)))
    assert out.speech_ids[0].numel() == spoken > 0
    reference = model.generate(inputs, DecodingConfig(**{**greedy.__dict__, "fast_decode": False}))
    assert torch.equal(out.sequences, reference.sequences)
    assert torch.equal(out.speech_ids[0], reference.speech_ids[0])


def test_a_model_folder_without_a_processor_exports_the_data_processor(k1_checkpoint, tmp_path):
    folder, train = k1_checkpoint
    weights_only = tmp_path / "weights_only"
    weights_only.mkdir()
    for name in ("config.json", "model.safetensors"):
        (weights_only / name).write_bytes((folder / name).read_bytes())
    out_dir = tmp_path / "exported"
    module = SpeechLLMModule(model=str(weights_only), lr=1e-3, export_dir=str(out_dir))
    data = SpokenChatDataModule(
        train=str(train), processor=str(folder), group_size=1, max_seconds=None, max_batch_size=2
    )
    trainer_for(1, tmp_path).fit(module, datamodule=data)
    # the data's processor went along (with the model's group size), so the export is a whole checkpoint
    processor = FunAudioChatProcessor.from_pretrained(out_dir)
    assert processor.group_size == 1
    assert (out_dir / "tokenizer.json").read_text() == (folder / "tokenizer.json").read_text()


def test_model_and_data_group_sizes_must_agree(k1_checkpoint, processor, tmp_path):
    folder, train = k1_checkpoint
    module = SpeechLLMModule(model=str(folder), lr=1e-3)
    # the datamodule says 5 (its processor folder's): refused at the start of fit, both sizes named
    data = SpokenChatDataModule(train=str(train), processor=str(folder), max_seconds=None, max_batch_size=2)
    assert data.group_size == 5
    with pytest.raises(UserInputError, match=r"group_size is 1 .* group_size is 5"):
        trainer_for(1, tmp_path).fit(module, datamodule=data)

    # a k = 5 batch from a plain loader: refused at the first step
    data.setup("fit")
    batch = data.collate([data.train_set[0], data.train_set[1]])
    loader = torch.utils.data.DataLoader([batch], batch_size=None)
    with pytest.raises(
        UserInputError, match=r"group_size is 1 .* group size \(from its <\|AUDIO\|> slots.*\) is 5"
    ):
        trainer_for(1, tmp_path).fit(SpeechLLMModule(model=str(folder), lr=1e-3), train_dataloaders=loader)

    with pytest.raises(ValueError, match="data.group_size must be an integer >= 1"):
        SpokenChatDataModule(train=str(train), processor=str(folder), group_size=0)


def test_bucketing_by_tokens_sorts_on_the_input_ids_lengths(k1_checkpoint):
    folder, train = k1_checkpoint
    data = SpokenChatDataModule(train=str(train), processor=str(folder), max_batch_size=2, bucket_by="tokens")
    data.setup("fit")
    sampler = data._sampler(data.train_set, shuffle=True)
    lengths = [int(data.train_set[i].input_ids.shape[0]) for i in range(len(data.train_set))]
    assert data.train_set.lengths == lengths and sampler.sort_by.tolist() == lengths
    by_seconds = SpokenChatDataModule(train=str(train), processor=str(folder), max_batch_size=2)
    by_seconds.setup("fit")
    assert (
        by_seconds._sampler(by_seconds.train_set, shuffle=True).sort_by.tolist()
        == by_seconds.train_set.durations
    )
    with pytest.raises(ValueError, match=r"data.bucket_by must be one of \['seconds', 'tokens'\]"):
        SpokenChatDataModule(train=str(train), processor=str(folder), bucket_by="frames")
