"""tools/experiments/conditioning_probe.py on a tiny random model and three spoken replies: the slot tokens
are the reply's text ids then <|sil|>, the features split the conditioning into LLM state + text embedding,
and the probe reports accuracies for each."""

import json

import pytest
import torch


@pytest.fixture(scope="module")
def conditioning_module(load_tool):
    with load_tool("tools/experiments/conditioning_probe.py") as module:
        yield module


def test_slot_features_split_the_conditioning(conditioning_module, spoken_replies):
    from funaudiochat.drsr import FunAudioChatForConditionalGeneration
    from funaudiochat.drsr.processing import FunAudioChatProcessor

    folder, conversations = spoken_replies
    model = FunAudioChatForConditionalGeneration.from_pretrained(str(folder)).eval()
    processor = FunAudioChatProcessor.from_pretrained(folder)
    data = conditioning_module._probe_module().speech_rows(conversations, folder, 1)
    features, tokens = conditioning_module.slot_features(model, data.collate([data.train_set[0]]))
    words = processor.tokenizer("Two plus three is five.", add_special_tokens=False)["input_ids"]
    sil = model.config.text_config.sil_index
    assert tokens[: len(words)].tolist() == words and (tokens[len(words) :] == sil).all()
    assert len(tokens) == (10 + 60) // 5  # the reply's slots: BOS delay and codes, 5 per slot
    torch.testing.assert_close(features["llm_state"] + features["text_embedding"], features["conditioning"])
    sils = (tokens == sil).nonzero()[:, 0]
    assert torch.equal(features["text_embedding"][sils[0]], features["text_embedding"][sils[-1]])
    assert "merge_inputs" not in vars(model)  # the wrapper is gone again


def test_main_reports_each_feature(conditioning_module, spoken_replies, tmp_path):
    folder, conversations = spoken_replies
    out = tmp_path / "probe.json"
    argv = ["--model", str(folder), "--conversations", str(conversations), "--train-rows", "2"]
    argv += ["--test-rows", "1", "--steps", "5", "--out", str(out)]
    assert conditioning_module.main(argv) == 0
    result = json.loads(out.read_text())
    assert (result["train_rows"], result["test_rows"], result["test_slots"]) == (2, 1, 14)
    for name in conditioning_module.FEATURES:
        assert 0.0 <= result[name]["all_slots"] <= 1.0 and 0.0 <= result[name]["answer_tokens"] <= 1.0
    with pytest.raises(SystemExit):
        conditioning_module.main([*argv[:4], "--steps", "0"])
