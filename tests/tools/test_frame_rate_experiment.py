"""tools/experiments/frame_rate.py: the FLOP accounting (only the LLM's share depends on the group size),
the 25 Hz arms' settings, an arm's record and the report table. The builds themselves need a finished demo
run (the recipe at group size 1 is tested in tests/training/demo/test_build.py; docs/experiments/
frame_rate.md has the figures)."""

import json

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


def test_the_25_hz_arms_keep_the_settings_but_the_grouping_and_the_budget_scales_the_llm_steps(experiment):
    from funaudiochat.training.demo.context import DemoSettings

    settings = DemoSettings(speech_polish_steps=0)
    same = experiment.arm_settings(settings, 1)
    assert same.group_size == 1 and same == DemoSettings(speech_polish_steps=0, group_size=1)
    half = experiment.arm_settings(settings, 1, cost_ratio=2.0)
    assert half.pre_alignment_steps == settings.pre_alignment_steps // 2
    assert half.cocktail_stage1_steps == settings.cocktail_stage1_steps // 2
    assert half.speech_polish_steps == 0  # a step count of 0 (a part the recipe leaves out) stays 0
    assert half.audio_encoder_steps == settings.audio_encoder_steps  # the towers cost the same at any k


def test_an_arm_counts_its_grouped_stages_and_the_restored_ones_at_their_first_runs_seconds(
    experiment, tmp_path
):
    from funaudiochat.training.demo.context import DemoSettings

    def stage(name, seconds, **extra):
        (tmp_path / name).mkdir()
        (tmp_path / name / "stage.json").write_text(json.dumps({"seconds": seconds, **extra}))

    stage("text_lm", 0.5, restored={"trained_seconds": 3000.0})
    stage("conversations", 100.0)
    stage("pre_alignment", 900.0, process_peak_rss_mb=2500.0)
    stage("dpo", 400.0, process_peak_rss_mb=3100.0)
    results = {"s2t": {"accuracy": 0.5}, "s2s": {"accuracy": 0.25}, "asr_wer": 0.7, "timing": {"rtf": 0.3}}
    record = experiment.arm_record(tmp_path, DemoSettings(group_size=1), results)
    assert record["grouped_stage_seconds"] == {"conversations": 100.0, "pre_alignment": 900.0, "dpo": 400.0}
    assert record["grouped_seconds"] == 1400.0 and record["recipe_seconds"] == 4400.0
    assert record["peak_rss_mb"] == 3100.0 and record["group_size"] == 1
    assert (record["s2t"], record["s2s"], record["asr_wer"], record["rtf"]) == (0.5, 0.25, 0.7, 0.3)
    assert "tools" not in record  # not evaluated: left out, not zero


def test_table_reports_every_arm_the_timing_and_the_paper_figures(experiment):
    arm = {
        "group_size": 5,
        "steps": {"pre_alignment_steps": 400, "cocktail_stage1_steps": 800},
        "grouped_seconds": 5000.0,
        "recipe_seconds": 12000.0,
        "peak_rss_mb": 3000.0,
        "s2t": 0.645,
        "s2s": 0.405,
        "s2s_text": 0.645,
        "asr_wer": 0.73,
        "tools": 0.143,
        "text_final": 0.816,
        "rtf": 0.19,
    }
    arms = {"k5": arm, "k1_samples": {**arm, "group_size": 1, "peak_rss_mb": None}, "k1_budget": arm}
    timing = {"ratio": 1.5, "k1_seconds_per_step": 3.0, "k5_seconds_per_step": 2.0, "steps": 12}
    part = {"llm": 1.0, "srh": 2.0, "audio_encoder": 3.0, "total": 6.0}
    flops = {
        "k5": {"demo": part, "official_8b": part},
        "k1": {"demo": {**part, "total": 9.0}, "official_8b": part},
    }
    text = experiment.table(arms, timing, flops)
    rows = [line for line in text.splitlines() if line.startswith("| k")]
    assert [row.split(" | ")[0] for row in rows] == ["| k5", "| k1_samples", "| k1_budget"]
    assert rows[0] == (
        "| k5 | 5 | 1200 | 5000 | 12000 | 3000 | 64.5 % | 40.5 % | 64.5 % | 73.0 % | 14.3 % | 81.6 % | 0.19 |"
    )
    assert "| 1 | 1200 | 5000 | 12000 | - |" in rows[1]
    assert "same batches: 1.50x (3.00 s against 2.00 s" in text
    assert "| demo | 1 | 1.00 | 2.00 | 3.00 | 9.00 | 1.50 |" in text


def test_an_arm_not_built_yet_is_a_row_that_says_so(experiment):
    pending = {"group_size": 1, "steps": {"pre_alignment_steps": 527}, "pending": "not built yet"}
    timing = {"ratio": 0.76, "k1_seconds_per_step": 1.1, "k5_seconds_per_step": 1.5, "steps": 12}
    part = {"llm": 1.0, "srh": 2.0, "audio_encoder": 3.0, "total": 6.0}
    flops = {k: {"demo": part, "official_8b": part} for k in ("k5", "k1")}
    text = experiment.table({"k1_budget": pending}, timing, flops)
    (row,) = [line for line in text.splitlines() if line.startswith("| k1_budget")]
    assert row.startswith("| k1_budget | 1 | 527 | not built yet |")
    assert row.count("|") == text.splitlines()[0].count("|"), "as many columns as the header"
