"""Comparing a run's trained products with saved ones: identical, close (float noise) or different."""

import json

import torch
from funaudiochat.training.demo.build import main
from funaudiochat.training.demo.product_compare import compare_stage, compare_weights
from safetensors.torch import save_file


def _weights(path, scale=0.0, seed=0):
    generator = torch.Generator().manual_seed(seed)
    tensors = {"a.weight": torch.randn(4, 3, generator=generator), "b.bias": torch.arange(5.0)}
    tensors["a.weight"] += scale
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))


def _stage(folder, name, scale=0.0, config='{"hidden": 4}'):
    stage = folder / name
    _weights(stage / "model" / "model.safetensors", scale)
    (stage / "model" / "config.json").write_text(config)
    (stage / "stage.json").write_text(json.dumps({"stage": name, "seconds": 1.0, "settings": {}}))
    return stage


def test_weights_are_compared_tensor_by_tensor(tmp_path):
    _weights(tmp_path / "x.safetensors")
    _weights(tmp_path / "y.safetensors", scale=0.5)
    result = compare_weights(tmp_path / "x.safetensors", tmp_path / "y.safetensors")
    assert result["tensors"] == 2
    assert abs(result["max_abs"] - 0.5) < 1e-6
    assert result["worst"]["tensor"] == "a.weight"
    assert 0 < result["relative_l2"] < result["worst"]["relative_l2"]

    save_file({"a.weight": torch.zeros(4, 3)}, str(tmp_path / "z.safetensors"))
    assert "b.bias" in compare_weights(tmp_path / "x.safetensors", tmp_path / "z.safetensors")["mismatch"]
    save_file({"a.weight": torch.zeros(3, 4), "b.bias": torch.zeros(5)}, str(tmp_path / "w.safetensors"))
    assert "a.weight" in compare_weights(tmp_path / "x.safetensors", tmp_path / "w.safetensors")["mismatch"]


def test_a_stage_is_identical_close_or_different(tmp_path):
    saved = _stage(tmp_path / "saved", "text_lm")
    assert compare_stage(_stage(tmp_path / "same", "text_lm"), saved, ("model",))["verdict"] == "identical"
    close = compare_stage(_stage(tmp_path / "close", "text_lm", scale=1e-6), saved, ("model",))
    assert close["verdict"] == "close"
    assert close["files"]["model/config.json"] == {"same": True}
    assert not close["files"]["model/model.safetensors"]["same"]
    far = compare_stage(_stage(tmp_path / "far", "text_lm", scale=0.3), saved, ("model",))
    assert far["verdict"] == "different"
    config = compare_stage(_stage(tmp_path / "config", "text_lm", config="{}"), saved, ("model",))
    assert config["verdict"] == "different"
    assert config["files"]["model/config.json"] == {"same": False}

    extra = _stage(tmp_path / "extra", "text_lm")
    (extra / "model" / "generation_config.json").write_text("{}")
    result = compare_stage(extra, saved, ("model",))
    assert result["verdict"] == "different"
    assert result["files"]["model/generation_config.json"]["missing_in"] == "saved"


def test_the_command_compares_what_the_run_trained_itself(tmp_path, capsys):
    saved, run = tmp_path / "saved", tmp_path / "run"
    for name in ("text_lm", "text_lm_copy"):
        _stage(saved, name)
    _stage(run, "text_lm", scale=1e-6)
    copy = _stage(run, "text_lm_copy")
    (copy / "restored.json").write_text("{}")  # a copy of saved products proves nothing: left out
    assert main(["--out", str(run), "--compare-products", str(saved)]) == 0
    report = json.loads((run / "products_compared.json").read_text())
    assert list(report["stages"]) == ["text_lm"]
    assert report["stages"]["text_lm"]["verdict"] == "close"
    assert "[text_lm] close: 1 of 2 files differ" in capsys.readouterr().out
