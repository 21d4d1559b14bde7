"""The speech-LLM recipes end to end on espeak-ng speech: tools/synth_spoken_data.py makes official
sharegpt data, pre-alignment then Core-Cocktail run from their recipes through funaudiochat-train, their
losses fall, and each exports a checkpoint the next one starts from."""

import csv
import statistics
import sys
from pathlib import Path

import pytest
import torch
from funaudiochat.drsr import FunAudioChatForConditionalGeneration
from funaudiochat.drsr.processing import FunAudioChatProcessor
from funaudiochat.drsr.text_tokenizer import train_text_tokenizer
from funaudiochat.training import cli
from funaudiochat.training.data.synth import main as synth_main
from funaudiochat.training.llm.module import tiny_config_for

ROOT = Path(__file__).resolve().parents[3]
RECIPES = ROOT / "packages" / "training" / "recipes"
PAIRS = [
    ("What is two plus three?", "Two plus three is five."),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is seven times eight?", "Seven times eight is fifty six."),
    ("Say hello.", "Hello! How are you?"),
]
SYSTEM = "You are asked to generate both text and speech tokens at the same time."


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    """Official sharegpt data from espeak-ng, and a start folder: processor + tiny model."""
    root = tmp_path_factory.mktemp("spoken")
    pairs = root / "pairs.tsv"
    pairs.write_text("".join(f"{q}\t{a}\n" for q, a in PAIRS))
    assert synth_main([str(pairs), "--out", str(root / "data"), "--seed", "0", "--speeds", "190"]) == 0
    corpus = [f"{q} {a}" for q, a in PAIRS] * 5 + [SYSTEM]
    processor = FunAudioChatProcessor(train_text_tokenizer(corpus, vocab_size=300), padding_side="right")
    start = root / "start"
    processor.save_pretrained(start)
    torch.manual_seed(0)
    FunAudioChatForConditionalGeneration(tiny_config_for(processor)).save_pretrained(start)
    return root / "data" / "train.jsonl", start


def losses(run: Path) -> list[float]:
    with (run / "logs" / "version_0" / "metrics.csv").open() as f:
        return [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


def overrides(data, start, run, steps):
    return [
        f"model.model={start}",
        f"data.processor={start}",
        f"data.train={data}",
        "data.max_batch_size=2",
        f"trainer.default_root_dir={run}",
        f"trainer.max_steps={steps}",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.callbacks=[]",
    ]


def test_pre_alignment_then_core_cocktail(spoken, tmp_path):
    data, start = spoken
    pre = tmp_path / "pre"
    cli.fit([RECIPES / "pre_alignment.yaml"], [*overrides(data, start, pre, 24), "model.lr=3e-3"])
    curve = losses(pre)
    assert len(curve) == 24 and sum(curve[-4:]) / 4 < 0.85 * sum(curve[:4]) / 4, curve
    aligned = FunAudioChatForConditionalGeneration.from_pretrained(pre / "model")
    original = FunAudioChatForConditionalGeneration.from_pretrained(start)
    for (name, a), b in zip(
        aligned.language_model.state_dict().items(),
        original.language_model.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b), f"pre-alignment changed the frozen LLM: {name}"

    cc = tmp_path / "cc"
    steps = ["model.stage1_steps=8", "model.stage2_steps=8", "model.stage1_lr=3e-3", "model.stage2_lr=3e-4"]
    trainer = cli.fit([RECIPES / "core_cocktail.yaml"], [*overrides(data, pre / "model", cc, 16), *steps])
    assert trainer.lightning_module.merged
    curve = losses(cc)
    # windows of 4 steps, one pass over the data each; seeded, the last pass averages 0.71 x the first
    # (0.91 x without the loss spike at step 3, where stage 1's high learning rate overshoots)
    first, last = statistics.mean(curve[:4]), statistics.mean(curve[-4:])
    assert last < 0.95 * first, curve
    FunAudioChatForConditionalGeneration.from_pretrained(cc / "model")


def test_bad_data_stops_before_training(spoken, tmp_path, capsys):
    data, start = spoken
    broken = tmp_path / "broken.jsonl"
    lines = data.read_text().splitlines()
    broken.write_text("\n".join([lines[0], lines[1].replace("[AU", "[XX", 1)]) + "\n")
    argv = [
        "fit",
        "--config",
        str(RECIPES / "pre_alignment.yaml"),
        *overrides(broken, start, tmp_path / "r", 2),
    ]
    assert cli.main(argv) == 2 or pytest.fail("bad data must stop the run")
    err = capsys.readouterr().err
    assert f"{broken}:2" in err


def test_core_cocktail_refuses_more_steps_than_its_stages(spoken, tmp_path, capsys):
    data, start = spoken
    argv = [
        "fit",
        "--config",
        str(RECIPES / "core_cocktail.yaml"),
        *overrides(data, start, tmp_path / "r", 9),
    ]
    argv += ["model.stage1_steps=4", "model.stage2_steps=4"]
    assert cli.main(argv) == 2
    assert "stage1_steps + stage2_steps = 8" in capsys.readouterr().err


def test_sigkill_then_resume_continues_the_loss_curve(spoken, tmp_path):
    """A run killed with SIGKILL mid-epoch resumes from its last (atomically written) checkpoint and then
    logs exactly the losses of an uninterrupted run: same data order (the sampler's position is in the
    checkpoint), same optimizer and schedule."""
    import os
    import signal
    import subprocess
    import time

    data, start = spoken
    steps = 12

    def argv(run, *extra):
        return [
            sys.executable,
            "-m",
            "funaudiochat.training.cli",
            "fit",
            "--config",
            str(RECIPES / "pre_alignment.yaml"),
            *overrides(data, start, run, steps)[:-1],
            "model.lr=3e-3",
            "data.max_batch_size=3",
            "trainer.callbacks=[{checkpoint: {every_n_train_steps: 1, save_last: true}}]",
            *extra,
        ]

    whole = tmp_path / "whole"
    subprocess.run(argv(whole), check=True, capture_output=True)
    reference = losses(whole)
    assert len(reference) == steps

    cut = tmp_path / "cut"
    proc = subprocess.Popen(argv(cut), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            done = [int(p.stem.split("step=")[1]) for p in cut.rglob("*step=*.ckpt")]
            if done and max(done) >= 4:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    last = next(cut.rglob("last.ckpt"))
    resumed_from = int(torch.load(last, map_location="cpu", weights_only=False)["global_step"])
    assert 3 <= resumed_from < steps
    subprocess.run(argv(cut, f"ckpt_path={last}"), check=True, capture_output=True)
    versions = sorted((cut / "logs").glob("version_*"))
    with (versions[-1] / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    after = {int(r["step"]): float(r["train/loss"]) for r in rows}
    assert sorted(after) == list(range(resumed_from, steps))
    for step, value in after.items():
        assert value == pytest.approx(reference[step], rel=1e-5, abs=1e-6), (step, value, reference[step])


def assert_same_training(ddp_model: Path, one_model: Path, start: Path) -> None:
    """The two exported models moved away from ``start`` and agree on every weight that moved, each to 1 %
    of the largest move in its tensor (at least 1e-5).

    Adam divides each gradient by its running size, so an element whose gradient is near zero moves by a
    step's worth of noise when the two runs sum their gradients in another order (2026-12-05, transformers
    5.25: one element of 4096 in ``audio_tower.output_matching.weight`` 1.9e-5 apart, the tensor moved by
    up to 8e-3, the mean difference 7e-9). A tensor left unsynchronised or mis-gathered differs by about
    as much as it moved."""
    ddp = FunAudioChatForConditionalGeneration.from_pretrained(ddp_model).state_dict()
    one = FunAudioChatForConditionalGeneration.from_pretrained(one_model).state_dict()
    original = FunAudioChatForConditionalGeneration.from_pretrained(start).state_dict()
    moved = [k for k in one if not torch.equal(one[k], original[k])]
    assert moved, "training changed nothing"
    for key in moved:
        largest_move = float((one[key] - original[key]).abs().max())
        torch.testing.assert_close(ddp[key], one[key], rtol=0, atol=max(1e-5, 0.01 * largest_move), msg=key)


def test_ddp_two_processes_equals_one_process_with_the_same_global_batch(spoken, tmp_path):
    """DDP over 2 CPU processes (gloo), one conversation per process and step, against one process that
    accumulates the same two conversations per step: both average the two per-conversation losses, so
    the trained models agree."""
    data, start = spoken
    ddp, one = tmp_path / "ddp", tmp_path / "one"
    fit_pre_alignment(
        data, start, ddp, "trainer.devices=2", "trainer.strategy=ddp_find_unused_parameters_true"
    )
    fit_pre_alignment(data, start, one, "trainer.devices=1", "trainer.accumulate_grad_batches=2")
    assert_same_training(ddp / "model", one / "model", start)


def fit_pre_alignment(data: Path, start: Path, root: Path, *extra: str) -> str:
    """Four pre-alignment steps of one conversation per process and step, in a process of its own (the
    ``funaudiochat-train`` command); returns what it printed."""
    import subprocess

    argv = [sys.executable, "-m", "funaudiochat.training.cli", "fit"]
    argv += ["--config", str(RECIPES / "pre_alignment.yaml"), *overrides(data, start, root, 4)]
    argv += ["model.lr=3e-3", "data.max_batch_size=1", "trainer.accelerator=cpu", *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def test_fsdp2_two_processes_follows_ddp(spoken, tmp_path):
    """FSDP2 (``trainer.strategy=fsdp2``: every decoder layer sharded with ``fully_shard`` over 2 CPU
    processes, gloo) against DDP on the same 2 processes and data: the same loss at every step, and the
    same trained model once the shards are gathered for the export."""
    data, start = spoken
    sharded, replicated = tmp_path / "fsdp2", tmp_path / "ddp"
    said = fit_pre_alignment(data, start, sharded, "trainer.devices=2", "trainer.strategy=fsdp2")
    assert "sharded over 2 ranks" in said
    fit_pre_alignment(
        data, start, replicated, "trainer.devices=2", "trainer.strategy=ddp_find_unused_parameters_true"
    )
    assert len(losses(sharded)) == len(losses(replicated)) == 4
    assert losses(sharded) == pytest.approx(losses(replicated), rel=1e-4, abs=1e-5)
    assert_same_training(sharded / "model", replicated / "model", start)


def spoken_preferences(data: Path, path: Path) -> list[dict]:
    """Preference pairs from the spoken data (rejected: another question's spoken answer), the tasks
    robustness and empathy taking turns; written to ``path`` as JSONL; returns the records."""
    import json

    records = [json.loads(line) for line in data.read_text().splitlines()]
    rows = []
    for i, chosen in enumerate(records):
        rejected = dict(chosen, audio=[chosen["audio"][0], records[(i + 1) % len(records)]["audio"][1]])
        rows.append({"task": "empathy" if i % 2 else "robustness", "chosen": chosen, "rejected": rejected})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return records


def test_dpo_ddp_two_processes_equals_one_process_with_the_same_global_batch(spoken, tmp_path):
    """DPO over 2 CPU processes (gloo), one preference pair per process and step (the task mixture gives
    rank r every 2nd draw), against one process that accumulates the same two pairs per step."""
    import subprocess

    data, start = spoken
    prefs = tmp_path / "prefs.jsonl"
    spoken_preferences(data, prefs)

    def run(root, *extra):
        argv = [sys.executable, "-m", "funaudiochat.training.cli", "fit"]
        argv += ["--config", str(RECIPES / "dpo.yaml")]
        argv += [f"model.model={start}", f"data.processor={start}", f"data.train={prefs}"]
        argv += ["data.batch_size=1", "model.lr=1e-3", "model.beta=0.5", "model.warmup_steps=0"]
        argv += [f"trainer.default_root_dir={root}", "trainer.max_steps=3", "trainer.accelerator=cpu"]
        argv += ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
        argv += ["trainer.callbacks=[]", "trainer.log_every_n_steps=1", *extra]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]

    run(tmp_path / "ddp", "trainer.devices=2", "trainer.strategy=ddp_find_unused_parameters_true")
    run(tmp_path / "one", "trainer.devices=1", "trainer.accumulate_grad_batches=2")
    assert_same_training(tmp_path / "ddp" / "model", tmp_path / "one" / "model", start)


def test_dpo_recipe_on_spoken_preferences(spoken, tmp_path):
    """Preference pairs built from the spoken data (rejected: another question's answer), two tasks mixed;
    DPO from its recipe moves the loss below log 2."""
    import json

    from funaudiochat.training.llm.preference import read_preferences

    data, start = spoken
    prefs = tmp_path / "prefs.jsonl"
    records = spoken_preferences(data, prefs)
    assert [p.task for p in read_preferences(prefs)] == ["robustness", "empathy"] * 2
    run = tmp_path / "dpo"
    argv = [f"model.model={start}", f"data.processor={start}", f"data.train={prefs}", "data.batch_size=2"]
    argv += [f"trainer.default_root_dir={run}", "trainer.max_steps=10", "trainer.log_every_n_steps=1"]
    argv += ["trainer.enable_progress_bar=false", "trainer.callbacks=[]", "model.lr=5e-4", "model.beta=0.5"]
    argv += ["model.warmup_steps=0", "data.mixture={empathy: 2.0, robustness: 1.0}"]
    cli.fit([RECIPES / "dpo.yaml"], argv)
    curve = losses(run)
    assert curve[0] == pytest.approx(0.6931, abs=2e-3)
    assert sum(curve[-3:]) / 3 < 0.6, curve
    FunAudioChatForConditionalGeneration.from_pretrained(run / "model")

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"task": "", "chosen": records[0], "rejected": records[1]}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: task") as err:
        read_preferences(bad)
    assert "prompt differs from chosen's" in str(err.value)
    bad.write_text(json.dumps({"task": "x", "chosen": records[0]}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: rejected: missing"):
        read_preferences(bad)


def test_sft_recipe_with_lora(spoken, tmp_path):
    data, start = spoken
    run = tmp_path / "sft"
    extra = ["model.lr=3e-3", "model.warmup_steps=0", "model.lora={r: 4, alpha: 8}", "trainer.max_steps=16"]
    cli.fit([RECIPES / "sft.yaml"], [*overrides(data, start, run, 16), *extra])
    curve = losses(run)
    assert sum(curve[-4:]) / 4 < 0.9 * sum(curve[:4]) / 4, curve
    exported = FunAudioChatForConditionalGeneration.from_pretrained(run / "model")  # adapters merged, strict
    original = FunAudioChatForConditionalGeneration.from_pretrained(start)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(exported.language_model.state_dict()[q], original.language_model.state_dict()[q])
