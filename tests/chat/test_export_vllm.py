"""``funaudiochat export-vllm``: a pipeline folder -> the model's own files and what vLLM reads besides
(the vocoder and the speech tokenizer left out); a checkpoint's own serving files are kept; each bad
folder is refused with the file named. (vLLM itself reads such folders in tests/vllm_plugin.)"""

import json

import pytest
from funaudiochat.chat import random_pipeline
from funaudiochat.chat.cli import main
from funaudiochat.chat.export_vllm import export_vllm
from funaudiochat.chat.loaders import save_parts
from funaudiochat.drsr import FunAudioChatForConditionalGeneration


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory):
    return save_parts(random_pipeline(0), tmp_path_factory.mktemp("export") / "pipe")


def test_a_pipeline_folder_becomes_the_models_own(pipeline_folder, tmp_path, capsys):
    assert main(["export-vllm", "--model", str(pipeline_folder), "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    assert "vllm serve" in capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"} <= names
    assert "speech_tokenizer" in names and not any(n.startswith(("flow", "hift", "spk2info")) for n in names)
    assert sorted(out.glob("*.safetensors")) == [out / "model.safetensors"]
    assert FunAudioChatForConditionalGeneration.from_pretrained(out).config.model_type == "funaudiochat"


def test_a_checkpoints_own_serving_files_are_kept(pipeline_folder, tmp_path):
    (pipeline_folder / "preprocessor_config.json").write_text(json.dumps({"feature_size": 128, "mine": 1}))
    try:
        out = export_vllm(pipeline_folder, tmp_path / "out")
        assert json.loads((out / "preprocessor_config.json").read_text())["mine"] == 1
    finally:
        from funaudiochat.drsr.serving_files import write_feature_extractor_config

        write_feature_extractor_config(pipeline_folder)


def test_bad_folders_are_refused(pipeline_folder, tmp_path):
    with pytest.raises(ValueError, match="--model folder not found"):
        export_vllm(tmp_path / "nothing", tmp_path / "out")
    with pytest.raises(ValueError, match="already exists"):
        export_vllm(pipeline_folder, pipeline_folder)
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in pipeline_folder.iterdir():
        if item.is_file() and item.name != "model.safetensors":
            (broken / item.name).write_bytes(item.read_bytes())
    with pytest.raises(ValueError, match=r"no model weights \(model.safetensors"):
        export_vllm(broken, tmp_path / "out")
    (broken / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "shard-1.safetensors"}})
    )
    with pytest.raises(
        ValueError, match="lists weight files that are not in the folder: shard-1.safetensors"
    ):
        export_vllm(broken, tmp_path / "out")
    (broken / "model.safetensors.index.json").write_text("[]")
    with pytest.raises(ValueError, match="not a safetensors index"):
        export_vllm(broken, tmp_path / "out")
    (broken / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="model_type must be 'funaudiochat'"):
        export_vllm(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()
