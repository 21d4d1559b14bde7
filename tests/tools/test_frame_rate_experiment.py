"""tools/experiments/frame_rate.py: the FLOP accounting (only the LLM's share depends on the group size)
and the report table. The training runs themselves need a finished demo run (docs/experiments/frame_rate.md
has their figures)."""

import pytest
import torch
from funaudiochat.drsr import FunAudioChatConfig, FunAudioChatForConditionalGeneration


@pytest.fixture(scope="module")
def experiment(load_tool):
    with load_tool("tools/experiments/frame_rate.py") as module:
        yield module


def test_only_the_llm_runs_five_times_as_often_at_25_hz(experiment):
    flops = {}
    for k in (5, 1):
        with torch.device("meta"):
            model = FunAudioChatForConditionalGeneration(FunAudioChatConfig.tiny(group_size=k))
        flops[k] = experiment.forward_gflops_per_speech_second(model, k)
    assert flops[1]["llm"] == pytest.approx(5 * flops[5]["llm"])
    assert flops[1]["audio_encoder"] == pytest.approx(flops[5]["audio_encoder"])
    # the SRH's pre-matching is k times narrower at k = 1 and runs k times as often: the same product
    assert flops[1]["srh"] == pytest.approx(flops[5]["srh"], rel=1e-3)
    for part in flops.values():
        assert part["total"] == pytest.approx(part["llm"] + part["srh"] + part["audio_encoder"])
    embeddings = model.language_model.get_input_embeddings().weight.numel()
    llm = sum(p.numel() for p in model.language_model.parameters()) - embeddings
    assert flops[1]["llm"] == pytest.approx(2 * llm * 25 / 1e9)


def test_table_reports_every_run_the_timing_and_the_paper_figures(experiment):
    run = {
        "group_size": 5,
        "steps_logged_to": 300,
        "seconds": 900.0,
        "peak_rss_mb": 3000.0,
        "heldout_text_reply_loss": 0.8,
        "heldout_speech_loss": 3.6,
        "s2t": 0.1,
        "s2s": 0.025,
        "s2s_text": 0.1,
    }
    results = {"k5": run, "k1_samples": {**run, "group_size": 1, "peak_rss_mb": 3300.0}, "k1_budget": run}
    timing = {"ratio": 1.5, "k1_seconds_per_step": 3.0, "k5_seconds_per_step": 2.0, "steps": 12}
    part = {"llm": 1.0, "srh": 2.0, "audio_encoder": 3.0, "total": 6.0}
    flops = {
        "k5": {"demo": part, "official_8b": part},
        "k1": {"demo": {**part, "total": 9.0}, "official_8b": part},
    }
    text = experiment.table(
        results, {5: {"steps": 10, "seconds": 1.0}, 1: {"steps": 10, "seconds": 2.0}}, timing, flops
    )
    rows = [line for line in text.splitlines() if line.startswith("| k")]
    assert [row.split(" | ")[0] for row in rows] == ["| k5", "| k1_samples", "| k1_budget"]
    assert "| 10.0 % | 2.5 % | 10.0 % |" in rows[0]
    assert "training time 1.50x" in text and "peak memory 1.10x" in text
    assert "| demo | 1 | 1.00 | 2.00 | 3.00 | 9.00 | 1.50 |" in text
