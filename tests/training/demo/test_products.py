"""Which saved stages a run may take over: those whose inputs were made with the settings it has."""

import json

import pytest
from funaudiochat.training.demo.build import STAGES, DemoBuild, DemoSettings, main
from funaudiochat.training.demo.products import (
    LLM_STAGES,
    TOWER_STAGES,
    VOCODER_STAGES,
    SettingsReads,
    restore_products,
    settings_read,
)


def _save(folder, name, settings, read, products=()):
    stage = folder / name
    stage.mkdir(parents=True)
    record = {"stage": name, "seconds": 1.0, "settings": settings}
    if read is not None:
        record["settings_read"] = read
    (stage / "stage.json").write_text(json.dumps(record))
    for product in products:
        (stage / product).parent.mkdir(parents=True, exist_ok=True)
        (stage / product).write_text("weights")


def test_a_stage_is_compared_on_what_it_and_its_inputs_read(tmp_path):
    base = vars(DemoSettings())
    saved = tmp_path / "saved"
    _save(saved, "corpus", base, ["seed"])
    _save(saved, "text_tokenizer", dict(base, text_lm_steps=5), ["text_vocab_size"], ["tokenizer.json"])
    _save(saved, "text_lm", base, ["seed", "text_lm_steps"], ["model/config.json"])
    fields = settings_read(json_records(saved), STAGES, "text_lm")
    assert set(fields) == {"seed", "text_vocab_size", "text_lm_steps"}

    # text_lm_steps differs only where the tokenizer, which does not read it, was made
    build = DemoBuild(tmp_path / "run", DemoSettings(cocktail_alpha=1.0), log=lambda _: None)
    assert restore_products(build, saved) == {"text_tokenizer": "restored", "text_lm": "restored"}
    assert (tmp_path / "run" / "text_lm" / "model" / "config.json").read_text() == "weights"

    other = DemoBuild(tmp_path / "other", DemoSettings(text_vocab_size=512), log=lambda _: None)
    outcome = restore_products(other, saved)
    assert outcome["text_lm"] == "not restored: the settings differ in ['text_vocab_size']"
    assert not (tmp_path / "other" / "text_lm").exists()


def test_a_record_without_its_reads_counts_every_setting_and_a_missing_input_blocks(tmp_path):
    base = vars(DemoSettings())
    saved = tmp_path / "saved"
    _save(saved, "corpus", base, None)  # an older stage.json: every field counts
    _save(saved, "text_tokenizer", base, ["text_vocab_size"], ["tokenizer.json"])
    build = DemoBuild(tmp_path / "run", DemoSettings(dpo_steps=3), log=lambda _: None)
    assert restore_products(build, saved) == {
        "text_tokenizer": "not restored: the settings differ in ['dpo_steps']"
    }
    _save(saved, "text_lm", base, ["seed"], ["model/config.json"])
    (saved / "corpus" / "stage.json").unlink()
    outcome = restore_products(DemoBuild(tmp_path / "run2", log=lambda _: None), saved)
    assert outcome["text_lm"] == f"not restored: its input stage 'corpus' is not in {saved}"


def test_nothing_saved_is_refused_and_the_command_line_saves_without_running(tmp_path, capsys):
    with pytest.raises(ValueError, match="no saved stage"):
        restore_products(DemoBuild(tmp_path / "run"), tmp_path)
    assert main(["--out", str(tmp_path / "run"), "--save-products", str(tmp_path / "saved")]) == 0
    assert "saved the products of []" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()


def test_settings_reads_are_recorded_and_read_only():
    reads = SettingsReads(DemoSettings(seed=3))
    assert reads.seed == 3 and reads.dpo_steps == DemoSettings.dpo_steps
    assert reads.names == {"seed", "dpo_steps"}
    with pytest.raises(AttributeError):
        getattr(reads, "nope")  # noqa: B009
    with pytest.raises(AttributeError, match="may not change"):
        reads.seed = 4


def json_records(folder):
    return {p.parent.name: json.loads(p.read_text()) for p in folder.glob("*/stage.json")}


def test_a_setting_added_later_counts_at_its_old_value_in_records_made_before_it(tmp_path):
    old = {k: v for k, v in vars(DemoSettings()).items() if k != "text_lm_skills"}
    saved = tmp_path / "saved"
    _save(saved, "corpus", old, ["seed"])
    _save(saved, "text_tokenizer", old, ["text_vocab_size"], ["tokenizer.json"])
    _save(saved, "text_lm", old, ["seed", "text_lm_steps"], ["model/config.json"])
    same = DemoBuild(tmp_path / "run", DemoSettings(text_lm_skills=False), log=lambda _: None)
    assert restore_products(same, saved) == {"text_tokenizer": "restored", "text_lm": "restored"}
    skilled = DemoBuild(tmp_path / "skilled", DemoSettings(text_lm_skills=True), log=lambda _: None)
    assert restore_products(skilled, saved) == {
        "text_tokenizer": "restored",
        "text_lm": "not restored: the settings differ in ['text_lm_skills']",
    }


def test_a_setting_added_later_counts_at_its_old_value_in_a_restored_marker_made_before_it(tmp_path):
    # a stage restored by a run from before the field existed: its marker names the settings it was
    # trained with, without the field; a run with the field at another value than its old one trains it
    base = {k: v for k, v in vars(DemoSettings()).items() if k != "text_lm_skills"}
    saved = tmp_path / "saved"
    _save(saved, "corpus", base, ["seed"])
    _save(saved, "text_tokenizer", base, ["text_vocab_size"], ["tokenizer.json"])
    _save(saved, "text_lm", base, ["seed", "text_lm_steps"], ["model/config.json"])
    record = json.loads((saved / "text_lm" / "stage.json").read_text())
    marker_settings = {"seed": base["seed"], "text_lm_steps": base["text_lm_steps"]}
    record["restored"] = {"from": "an older build", "trained_seconds": 9.0, "settings": marker_settings}
    (saved / "text_lm" / "stage.json").write_text(json.dumps(record))
    same = DemoBuild(tmp_path / "run", DemoSettings(text_lm_skills=False), log=lambda _: None)
    assert restore_products(same, saved)["text_lm"] == "restored"
    skilled = DemoBuild(tmp_path / "skilled", DemoSettings(text_lm_skills=True), log=lambda _: None)
    assert restore_products(skilled, saved)["text_lm"] == (
        "not restored: the settings differ in ['text_lm_skills']"
    )


def test_a_stage_trained_at_another_precision_is_restored_and_its_marker_says_which(tmp_path):
    old = {k: v for k, v in vars(DemoSettings()).items() if not k.endswith("_precision")}
    saved = tmp_path / "saved"
    _save(saved, "corpus", old, ["seed"])
    _save(saved, "text_tokenizer", old, ["text_vocab_size"], ["tokenizer.json"])
    _save(saved, "text_lm", old, ["seed", "text_lm_steps"], ["model/config.json"])
    _save(saved, "speech", old, ["seed"])
    _save(saved, "vocoder_hift", old, ["hift_steps"], ["hift.safetensors"])
    bf16 = DemoSettings(
        llm_precision="bf16-mixed", tower_precision="bf16-mixed", vocoder_precision="bf16-mixed"
    )
    assert set(restore_products(DemoBuild(tmp_path / "bf16", bf16, log=print), saved).values()) == {
        "restored"
    }
    # saved before the precisions existed: trained in float32
    for name, field in (("text_lm", "llm_precision"), ("vocoder_hift", "vocoder_precision")):
        marker = json.loads((tmp_path / "bf16" / name / "restored.json").read_text())
        assert marker["settings"][field] == "32-true"
    # what a stage learns still counts
    assert restore_products(DemoBuild(tmp_path / "steps", DemoSettings(hift_steps=1), log=print), saved)[
        "vocoder_hift"
    ] == ("not restored: the settings differ in ['hift_steps']")


def test_each_training_stage_has_one_precision_setting():
    trained = {name for name, stage in STAGES.items() if stage.products} - {"text_tokenizer"}
    groups = [*LLM_STAGES, *TOWER_STAGES, *VOCODER_STAGES]
    assert sorted(groups) == sorted(trained)


def test_a_stage_restored_twice_keeps_the_seconds_of_the_run_that_trained_it(tmp_path):
    base = vars(DemoSettings())
    saved = tmp_path / "saved"
    _save(saved, "corpus", base, ["seed"])
    _save(saved, "text_tokenizer", base, ["text_vocab_size"], ["tokenizer.json"])
    _save(saved, "text_lm", base, ["seed", "text_lm_steps"], ["model/config.json"])
    record = json.loads((saved / "text_lm" / "stage.json").read_text())
    record["restored"] = {"from": "an older build", "trained_seconds": 3000.0}  # a copy there too
    (saved / "text_lm" / "stage.json").write_text(json.dumps(record))
    build = DemoBuild(tmp_path / "run", log=lambda _: None)
    restore_products(build, saved)
    markers = {
        name: json.loads((tmp_path / "run" / name / "restored.json").read_text())
        for name in ("text_lm", "text_tokenizer")
    }
    assert markers["text_lm"]["trained_seconds"] == 3000.0
    assert markers["text_tokenizer"]["trained_seconds"] == 1.0


def test_the_card_names_the_stages_trained_with_other_settings_than_the_runs(tmp_path):
    from funaudiochat.training.demo.package_stage import other_settings

    old = {k: v for k, v in vars(DemoSettings()).items() if not k.endswith("_precision")}
    saved = tmp_path / "saved"
    _save(saved, "corpus", old, ["seed"])
    _save(saved, "text_tokenizer", old, ["text_vocab_size"], ["tokenizer.json"])
    _save(saved, "text_lm", old, ["seed", "text_lm_steps"], ["model/config.json"])
    fp32 = DemoSettings(llm_precision="32-true")
    restored = DemoBuild(tmp_path / "run", fp32, log=print)
    assert restore_products(restored, saved)["text_lm"] == "restored"
    marker = json.loads((tmp_path / "run" / "text_lm" / "restored.json").read_text())
    # what the saved stage read, its precision (added later) at the float32 it trained in
    assert marker["settings"] == {
        "seed": 0,
        "text_lm_steps": old["text_lm_steps"],
        "llm_precision": "32-true",
    }
    # the run goes on in bfloat16 (as `tools/train_demo.py` without --set): its restored stage did not
    for name, read in (("text_lm", ["llm_precision"]), ("text_lm_copy", ["llm_precision", "seed"])):
        record = {"stage": name, "seconds": 1.0, "settings": vars(fp32), "settings_read": read}
        if name == "text_lm":
            record["restored"] = marker
        else:
            record["settings"] = dict(vars(fp32), llm_precision="bf16-mixed")
        (tmp_path / "run" / name).mkdir(exist_ok=True)
        (tmp_path / "run" / name / "stage.json").write_text(json.dumps(record))
    later = DemoBuild(tmp_path / "run", DemoSettings(llm_precision="bf16-mixed"), log=print)
    lines = other_settings(later, ["corpus", "text_lm", "text_lm_copy", "dpo"])
    assert lines.splitlines()[2:] == ['- `text_lm`: `llm_precision="32-true"`']
    assert other_settings(restored, ["text_lm", "text_lm_copy"]).splitlines()[2:] == [
        '- `text_lm_copy`: `llm_precision="bf16-mixed"`'
    ]
    assert other_settings(later, ["corpus"]) == ""


def test_a_fit_that_resumes_its_finished_checkpoint_and_exports_nothing_says_so(tmp_path, monkeypatch):
    """``--force`` keeps a stage's Lightning checkpoints (so that more steps go on from them); one that had
    run every step trains nothing and exports nothing, which must not pass for a finished stage."""
    import funaudiochat.training.cli as cli
    from funaudiochat.training.demo.context import fit_recipe

    calls = []
    monkeypatch.setattr(cli, "fit", lambda configs, overrides: calls.append(overrides))
    run = tmp_path / "run"
    (run / "logs" / "version_0" / "checkpoints").mkdir(parents=True)
    checkpoint = run / "logs" / "version_0" / "checkpoints" / "step=60.ckpt"
    checkpoint.write_bytes(b"")
    with pytest.raises(RuntimeError, match=r"exported no .*model \(it resumed .*step=60.ckpt"):
        fit_recipe("dpo", run, ["trainer.max_steps=60"], product=run / "model")
    assert f"ckpt_path={checkpoint}" in calls[0]
    (run / "model").mkdir()  # what a fit that trained exports: then nothing is said, nothing is fitted again
    fit_recipe("dpo", run, ["trainer.max_steps=60"], product=run / "model")
    assert len(calls) == 1
