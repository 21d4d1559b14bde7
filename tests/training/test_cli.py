"""``funaudiochat-train``: the shipped recipes run ``fit`` end to end and write weights the vocoder loads."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from funaudiochat.training import cli
from funaudiochat.training.atomic import TEMP_PREFIX, atomic_write
from funaudiochat.vocoder import CausalFlowMatching, FlowConfig, HiFTConfig, HiFTGenerator
from safetensors.torch import load_file

RECIPES = Path(__file__).resolve().parents[2] / "packages" / "training" / "recipes"
QUIET = [
    "trainer.logger=false",
    "trainer.enable_checkpointing=false",
    "--trainer.enable_progress_bar",
    "false",
]


def test_fit_flow_recipe(speech_dir, tmp_path):
    root = tmp_path / "flow"
    argv = ["fit", "--config", str(RECIPES / "vocoder_flow.yaml"), f"data.train={speech_dir}"]
    argv += [f"--trainer.default_root_dir={root}", "trainer.max_steps=2", "data.batch_size=2", *QUIET]
    argv += [f"data.val={speech_dir / 'utt1.wav'}", "trainer.val_check_interval=1"]
    assert cli.main(argv) == 0
    flow = CausalFlowMatching.from_pretrained(root / "flow.safetensors", FlowConfig.tiny())
    mel, mel_len = flow.inference(torch.randint(0, 6561, (1, 6)), torch.randn(1, 192))
    assert mel.shape == (1, 80, 12) and torch.isfinite(mel).all()
    saved = (root / "config.yaml").read_text()
    assert "stage: vocoder_flow" in saved and str(speech_dir) in saved


def test_fit_hift_recipe(speech_dir, tmp_path):
    root = tmp_path / "hift"
    overrides = [f"data.train={speech_dir}", f"data.val={speech_dir / 'utt0.wav'}"]
    overrides += [f"trainer.default_root_dir={root}", "trainer.max_steps=4", "data.batch_size=2"]
    overrides += [*QUIET[:2], "trainer.enable_progress_bar=false"]
    trainer = cli.fit([RECIPES / "vocoder_hift.yaml"], overrides)
    assert trainer.global_step == 4 and "val/loss_mel" in trainer.callback_metrics
    hift = HiFTGenerator.from_state_dict(load_file(root / "hift.safetensors"), HiFTConfig.tiny())
    wave, _ = hift.inference(torch.randn(1, 80, 8))
    assert wave.shape == (1, 3840)


@pytest.mark.parametrize("recipe", sorted(p.stem for p in RECIPES.glob("*.yaml")))
def test_every_recipe_checkpoints_every_few_hundred_steps(recipe):
    """A killed fit resumes from its newest checkpoint (``demo.context.fit_recipe``): an epoch-end one alone
    can be tens of minutes behind."""
    import yaml

    trainer = yaml.safe_load((RECIPES / f"{recipe}.yaml").read_text())["trainer"]
    checkpoints = [c["checkpoint"] for c in trainer.get("callbacks", []) if "checkpoint" in c]
    assert checkpoints and checkpoints[0]["save_last"] and checkpoints[0]["every_n_train_steps"] <= 500


def test_parse_args():
    command, configs, overrides = cli.parse_args(
        ["fit", "--config", "a.yaml", "--config=b.yaml", "x.y=1", "--m.n=2", "--p", "3"]
    )
    assert (command, configs, overrides) == ("fit", ["a.yaml", "b.yaml"], ["x.y=1", "m.n=2", "p=3"])


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "needs a value for data.train"),
        (["data.train=x", "optimizer.lr=1"], "unknown recipe sections"),
        (["data.train=x", "model.learning_rate=1"], "unknown model arguments"),
        (["data.train=x", "trainer.epochs=1"], "unknown trainer arguments"),
        (["data.train=x", "stage=vocoder_gan"], "is not one of"),
        (["data.train=x", "model.hift.preset=huge"], "unknown HiFTConfig preset"),
        (["data.train=x", "positional"], "cannot read argument"),
        (["data.train=x", "compile=true"], "compile: true names no submodule for stage 'vocoder_hift'"),
        (["data.train=x", "compile=hift"], "compile must be true, false or a list"),
        (["data.train=x", "compile=[hift.nothing]"], "'hift.nothing' names no submodule: hift has"),
    ],
)
def test_recipe_errors(extra, message, capsys):
    assert cli.main(["fit", "--config", str(RECIPES / "vocoder_hift.yaml"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_other_commands(capsys, tmp_path):
    assert cli.main(["stages"]) == 0
    listed = capsys.readouterr().out
    assert "vocoder_flow" in listed and "compile: true compiles: model.language_model.model" in listed
    assert cli.main(["print-config", "--config", str(RECIPES / "vocoder_flow.yaml"), "model.lr=0.5"]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.5" in out and "train: ???" in out
    assert cli.main(["fit", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "recipe file not found" in capsys.readouterr().err
    assert cli.main(["train"]) == 2


def test_console_script():
    script = Path(sys.executable).parent / "funaudiochat-train"
    assert script.is_file(), "funaudiochat-train is not installed (run bash tools/setup.sh)"
    result = subprocess.run([str(script), "stages"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "vocoder_hift" in result.stdout


def temp_files(folder: Path) -> list[Path]:
    """Files under ``folder`` named like ``atomic_write``'s temporaries (``.tmp-<target>.<random>``)."""
    return sorted(folder.rglob(f"{TEMP_PREFIX}*"))


def test_temp_files_finds_what_atomic_write_leaves_mid_write(tmp_path):
    """The leftover check sees the names ``atomic_write`` really uses: a copy of its temporary file, taken
    while it is written, is found; the finished write leaves none."""
    run, planted = tmp_path / "run", tmp_path / "planted"
    planted.mkdir()

    def write_and_copy_the_temporary(handle):
        handle.write(b"weights")
        handle.flush()
        (temporary,) = run.iterdir()
        (planted / temporary.name).write_bytes(temporary.read_bytes())

    atomic_write(run / "last.ckpt", write_and_copy_the_temporary)
    assert [p.name for p in run.iterdir()] == ["last.ckpt"] and not temp_files(run)
    (leftover,) = planted.iterdir()
    assert leftover.name.startswith(f"{TEMP_PREFIX}last.ckpt.")
    assert temp_files(tmp_path) == [leftover]


def test_logs_checkpoints_plot_and_resume(speech_dir, tmp_path):
    """CSV + TensorBoard logs, atomic checkpoints every step, a PNG of the curves, and a resumed run that
    starts where the checkpoint left off."""
    import importlib.util

    root = tmp_path / "run"
    base = ["fit", "--config", str(RECIPES / "vocoder_flow.yaml"), f"data.train={speech_dir}"]
    base += [f"trainer.default_root_dir={root}", "data.batch_size=2", "trainer.enable_progress_bar=false"]
    base += ["trainer.logger=[csv,tensorboard]", "trainer.log_every_n_steps=1"]
    base += ["trainer.callbacks=[{checkpoint: {every_n_train_steps: 1, save_last: true}}]"]
    assert cli.main([*base, "trainer.max_steps=3"]) == 0
    metrics = root / "logs" / "version_0" / "metrics.csv"
    assert metrics.is_file() and "train/loss" in metrics.read_text()
    assert list((root / "logs").rglob("events.out.tfevents.*"))
    checkpoints = list(root.rglob("*.ckpt"))
    assert any(p.name == "last.ckpt" for p in checkpoints)
    assert not temp_files(root), temp_files(root)  # atomic writes leave no temporary file

    spec = importlib.util.spec_from_file_location(
        "plot_metrics", RECIPES.parents[2] / "tools" / "plot_metrics.py"
    )
    plot_metrics = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot_metrics)
    png = tmp_path / "curves.png"
    assert plot_metrics.main([str(metrics), "--out", str(png), "--smooth", "2"]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert plot_metrics.main([str(metrics), "--out", str(png), "--metrics", "nope"]) == 2

    last = next(p for p in checkpoints if p.name == "last.ckpt")
    trainer = cli.fit(
        [RECIPES / "vocoder_flow.yaml"], [*base[3:], "trainer.max_steps=5", f"ckpt_path={last}"]
    )
    assert trainer.global_step == 5


def test_unknown_logger_and_callback(speech_dir, capsys):
    argv = ["fit", "--config", str(RECIPES / "vocoder_flow.yaml"), f"data.train={speech_dir}"]
    assert cli.main([*argv, "trainer.logger=[wandb]"]) == 2
    assert "unknown trainer.logger 'wandb'" in capsys.readouterr().err
    assert cli.main([*argv, "trainer.callbacks=[early_stop]"]) == 2
    assert "unknown trainer.callbacks entry 'early_stop'" in capsys.readouterr().err
    assert cli.main([*argv, "trainer.callbacks=[{checkpoint:{x:1}}]"]) == 2
    assert "space after ':'" in capsys.readouterr().err


def test_strategy_by_mapping_and_fsdp1_needs_a_gpu():
    from lightning.pytorch.strategies import DDPStrategy

    made = cli.trainer_objects({"strategy": {"ddp": {"find_unused_parameters": True}}})
    assert isinstance(made["strategy"], DDPStrategy)
    with pytest.raises(cli.RecipeError, match="trainer.strategy as a mapping"):
        cli.trainer_objects({"strategy": {"horovod": {}}})
    # Lightning 2.6 runs FSDP (FSDP1) on GPUs only; on a CPU-only machine it says so (docs/training.md)
    import lightning as L

    with pytest.raises(ValueError, match="requires a GPU accelerator"):
        L.Trainer(accelerator="cpu", devices=2, strategy="fsdp", logger=False)


def test_fsdp2_is_data_parallel_over_every_device():
    from lightning.pytorch.strategies import ModelParallelStrategy

    made = cli.trainer_objects({"strategy": "fsdp2", "devices": 2, "num_nodes": 2})["strategy"]
    assert isinstance(made, ModelParallelStrategy)
    assert (made._data_parallel_size, made._tensor_parallel_size) == (4, 1)
    made = cli.trainer_objects({"strategy": {"fsdp2": {"save_distributed_checkpoint": False}}, "devices": 2})
    assert made["strategy"]._data_parallel_size == 2 and not made["strategy"]._save_distributed_checkpoint


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_configs_are_valid_and_need_a_gpu(stage, tmp_path):
    """The recipes' DeepSpeed configs parse and build Lightning's strategy (DeepSpeed itself imports on a
    CPU); Lightning 2.6 then refuses to train with it without CUDA, which a test pins (docs/training.md)."""
    pytest.importorskip("deepspeed")
    import lightning as L
    import torch
    from lightning.pytorch.demos.boring_classes import BoringModel
    from lightning.pytorch.strategies import DeepSpeedStrategy

    config = RECIPES / "deepspeed" / f"zero{stage}.json"
    made = cli.trainer_objects({"strategy": {"deepspeed": {"config": str(config)}}})["strategy"]
    assert isinstance(made, DeepSpeedStrategy) and made.config["zero_optimization"]["stage"] == stage
    trainer = L.Trainer(
        accelerator="cpu", strategy=made, max_steps=1, logger=False, enable_checkpointing=False
    )
    with pytest.raises(RuntimeError, match="only supported on CUDA GPUs"):
        trainer.fit(BoringModel(), torch.utils.data.DataLoader(torch.randn(4, 32), batch_size=2))


def test_compiling_keeps_enough_variants_for_the_decoders_shapes(monkeypatch):
    """The speech LLM's decoder and the SRH's are one function to dynamo, and their batch x length shapes
    make inductor compile new variants: more than dynamo's default of 8 must be kept, or the rest run
    eagerly."""
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 8)
    holder = torch.nn.Module()
    holder.layer = torch.nn.Linear(2, 2)
    cli.compile_submodules(holder, [])
    assert torch._dynamo.config.recompile_limit == 8, "nothing compiled, nothing changed"
    cli.compile_submodules(holder, ["layer"])
    assert torch._dynamo.config.recompile_limit == cli.COMPILED_VARIANTS > 8
    assert holder.layer(torch.ones(3, 2)).shape == (3, 2)
