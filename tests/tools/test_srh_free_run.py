"""tools/experiments/srh_free_run.py on a tiny random model: the step-by-step SRH, fed the reference codes
and a pad-previous-token prefill, computes exactly the logits of the teacher-forced forward (so a free run
starts from what training showed), and the tool reports every spoken reply."""

import json

import pytest
import torch


@pytest.fixture(scope="module")
def free_run_module(load_tool):
    with load_tool("tools/experiments/srh_free_run.py") as module:
        yield module


@pytest.fixture(scope="module")
def probe_module(load_tool):
    with load_tool("tools/experiments/srh_probe.py") as module:
        yield module


def test_stepping_on_the_reference_reproduces_the_teacher_forced_logits(
    free_run_module, probe_module, spoken_replies
):
    from funaudiochat.drsr import FunAudioChatForConditionalGeneration

    folder, conversations = spoken_replies
    model = FunAudioChatForConditionalGeneration.from_pretrained(str(folder)).eval()
    data = probe_module.speech_rows(conversations, folder, 3)
    for index in range(len(data.train_set)):
        batch = data.collate([data.train_set[index]])
        conditioning, logits, reference, first = free_run_module.teacher_forced(
            model, batch, probe_module.reply_codes
        )
        seen = []

        def forced(step_logits, j, seen=seen, reference=reference):
            seen.append(step_logits[0])
            return reference[len(seen) - 1 : len(seen)]

        codes = free_run_module.free_run(model, conditioning, first, forced, prefill="pad")
        assert torch.equal(codes, reference)  # ends with the EOS group, as the reference
        torch.testing.assert_close(torch.stack(seen), logits, atol=2e-4, rtol=1e-4)
        # the official prefill (BOS at every prompt position) shows the head other inputs
        seen.clear()
        free_run_module.free_run(model, conditioning, first, forced, prefill="bos")
        assert not torch.allclose(torch.stack(seen), logits, atol=2e-4)


def test_main_reports_each_spoken_reply(free_run_module, spoken_replies, tmp_path):
    folder, conversations = spoken_replies
    out = tmp_path / "free.json"
    threads = torch.get_num_threads()
    argv = ["--model", str(folder), "--conversations", str(conversations), "--no-listen", "--out", str(out)]
    assert free_run_module.main(argv) == 0
    assert torch.get_num_threads() == threads
    result = json.loads(out.read_text())
    assert [row["reply"] for row in result["rows"]] == [
        "two plus three is five",
        "a banana is yellow",
        "yes nine is more than four",
    ]
    for row in result["rows"]:
        assert row["codes"] == 10 + 60 + 5  # BOS delay, codes, EOS group
        assert 0 < row["free_codes"] and 0.0 <= row["free_running_agreement"] <= 1.0
    assert set(result["summary"]) == {"teacher_forced_agreement", "free_running_agreement"}
    with pytest.raises(ValueError, match="prefill"):
        free_run_module.free_run(None, torch.zeros(1, 2, 4), 1, None, prefill="eos")
