"""``funaudiochat import-official`` on small files of each official format: a Hugging Face checkpoint folder,
CosyVoice3's ``flow.pt`` / ``hift.pt`` / ``spk2info.pt``, and an S3 speech tokenizer as ONNX (written here in
the layout the ``s3tokenizer`` package's ONNX reader expects: initializers feeding nodes named after the
layers). The imported folder loads as a pipeline and answers as the parts it came from do."""

import dataclasses
import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from funaudiochat.chat import Pipeline, Request, Sampling, random_pipeline
from funaudiochat.chat.cli import main
from funaudiochat.chat.import_official import import_official
from funaudiochat.vocoder import CausalFlowMatching
from funaudiochat.vocoder.token2wav import Token2Wav
from onnx import helper, numpy_helper


def write_s3_onnx(state_dict: dict[str, torch.Tensor], path) -> None:
    """An ONNX file holding an S3 tokenizer V2/V3 state dict the way the official export names it."""
    initializers, nodes = [], []

    def feed(name: str, tensor: torch.Tensor, node: str, op: str = "MatMul", inputs=None) -> None:
        array = tensor.detach().numpy()
        initializers.append(numpy_helper.from_array(array, name))
        nodes.append(helper.make_node(op, inputs or ["x", name], [node + "_out"], name=node))

    for key, value in state_dict.items():
        if key.startswith("encoder.conv"):
            feed(key.replace("encoder.", "encoders."), value, "conv_" + key, op="Conv")
        elif key == "quantizer._codebook.project_down.weight":
            feed("onnx::MatMul_2536", value.T.contiguous(), "/quantizer/project_down/MatMul")
        elif key == "quantizer._codebook.project_down.bias":
            feed("quantizer.project_in.bias", value, "/quantizer/project_down/Add")
        elif key.endswith("_ln.weight"):
            layer = "/" + key.removeprefix("encoder.").removesuffix(".weight").replace(".", "/", 2)
            layer = layer.replace("/", ".", 1).replace(".", "/", 1)  # "/blocks.0/attn_ln"
            bias = state_dict[key.removesuffix("weight") + "bias"]
            initializers.append(numpy_helper.from_array(value.numpy(), key + "_scale"))
            initializers.append(numpy_helper.from_array(bias.numpy(), key + "_bias"))
            nodes.append(
                helper.make_node(
                    "LayerNormalization",
                    ["x", key + "_scale", key + "_bias"],
                    [key + "_out"],
                    name=layer + "/LayerNormalization",
                )
            )
        elif key.endswith("_ln.bias"):
            continue
        else:  # "encoder.blocks.0.attn.query.weight" -> node "/blocks.0/attn/query/MatMul"
            inside = key.removeprefix("encoder.")
            layer, _, kind = inside.rpartition(".")
            parts = layer.split(".")
            path_name = "/" + ".".join(parts[:2]) + "/" + "/".join(parts[2:])
            if parts[2] == "mlp":  # the official export nests the MLP: "/blocks.0/mlp/mlp.0/MatMul"
                path_name = "/" + ".".join(parts[:2]) + "/mlp/mlp." + parts[3]
            if "fsmn_block" in layer:
                feed(key, value, path_name + "/Conv", op="Conv")
            elif kind == "weight":
                feed(key, value.T.contiguous(), path_name + "/MatMul")
            else:
                feed(key, value, path_name + "/Add", op="Add")
    graph = helper.make_graph(nodes, "s3", [], [], initializer=initializers)
    onnx.save(helper.make_model(graph), str(path))


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """Small official-format folders: ``fac/`` (HF checkpoint) and ``cosyvoice/`` (.pt files and ONNX)."""
    root = tmp_path_factory.mktemp("official")
    pipe = random_pipeline(3)
    fac = root / "fac"
    pipe.model.save_pretrained(fac)
    pipe.processor.save_pretrained(fac)
    cv = root / "cosyvoice"
    cv.mkdir()
    torch.save(pipe.vocoder.flow.state_dict(), cv / "flow.pt")
    torch.save({f"generator.{k}": v for k, v in pipe.vocoder.hift.state_dict().items()}, cv / "hift.pt")
    g = torch.Generator().manual_seed(0)
    spk2info = {
        "中文女": {"embedding": torch.randn(1, 192, generator=g)},
        "中文男": {
            "embedding": torch.randn(1, 192, generator=g),
            "speech_token": torch.randint(0, 6561, (1, 5), generator=g),
            "speech_feat": torch.randn(1, 10, 80, generator=g),
        },
    }
    torch.save(spk2info, cv / "spk2info.pt")
    write_s3_onnx(pipe.speech_tokenizer.state_dict(), cv / "speech_tokenizer_v3.onnx")
    return pipe, fac, cv


def test_import_makes_a_pipeline_that_answers_as_its_parts(official, tmp_path, espeak):
    pipe, fac, cv = official
    out = import_official(fac, cv, tmp_path / "pipeline")
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "flow.safetensors", "hift.safetensors"} <= names
    assert {"spk2info.safetensors", "speech_tokenizer_v3.safetensors", "README.md"} <= names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    loaded = Pipeline.from_pretrained(out)
    assert loaded.vocoder.speakers.names == ["中文女", "中文男"]
    question = espeak("Where is the station?", tmp_path / "q.wav")
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1)
    assert torch.equal(loaded.speech_tokenizer.encode([wave])[0], pipe.speech_tokenizer.encode([wave])[0])
    request = Request(audio=question, sampling=Sampling(max_new_tokens=10))
    # the settings a .pt file does not hold (the solver's noise length, the chunk size) are CosyVoice3's
    official_size = dataclasses.replace(pipe.vocoder.flow.config, noise_frames=15000, static_chunk_size=50)
    flow = CausalFlowMatching(official_size).eval()
    flow.load_state_dict(pipe.vocoder.flow.state_dict())
    mine = Pipeline(pipe.model, pipe.processor, Token2Wav(flow, pipe.vocoder.hift, loaded.vocoder.speakers))
    a, b = mine.chat(request), loaded.chat(request)
    assert a.text_ids == b.text_ids and torch.equal(a.speech_codes, b.speech_codes)
    torch.testing.assert_close(a.audio, b.audio, rtol=0, atol=1e-6)


def test_the_command_line_runs_the_import(official, tmp_path, capsys):
    _, fac, cv = official
    assert (
        main(["import-official", "--fac", str(fac), "--cosyvoice", str(cv), "--out", str(tmp_path / "p")])
        == 0
    )
    assert "pipeline folder written" in capsys.readouterr().out
    assert (
        main(["import-official", "--fac", str(fac), "--cosyvoice", str(cv), "--out", str(tmp_path / "p")])
        == 2
    )
    assert "already exists" in capsys.readouterr().err


def broken_copy(official, tmp_path, where: str, name: str, content: bytes | None):
    _, fac, cv = official
    fac2, cv2 = tmp_path / "fac", tmp_path / "cv"
    shutil.copytree(fac, fac2)
    shutil.copytree(cv, cv2)
    target = (fac2 if where == "fac" else cv2) / name
    if content is None:
        target.unlink()
    else:
        target.write_bytes(content)
    return fac2, cv2


@pytest.mark.parametrize(
    "where, name, content, message",
    [
        ("fac", "config.json", None, r"config.json: missing; the --fac folder holds the model's config.json"),
        ("fac", "config.json", b"{oops", r"config.json: not valid JSON"),
        (
            "fac",
            "config.json",
            json.dumps({"model_type": "qwen3"}).encode(),
            "model_type must be 'funaudiochat'",
        ),
        ("fac", "model.safetensors", None, r"no \*.safetensors weights"),
        (
            "fac",
            "model.safetensors",
            b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}",
            "not a readable safetensors",
        ),
        ("fac", "tokenizer.json", None, "the text tokenizer's files are missing"),
        ("cosyvoice", "flow.pt", None, r"flow.pt: missing; the --cosyvoice folder holds CosyVoice3's flow"),
        ("cosyvoice", "flow.pt", b"not a torch file", r"flow.pt: refused: not a tensors-only torch file"),
        ("cosyvoice", "hift.pt", None, r"hift.pt: missing; the --cosyvoice folder holds CosyVoice3's HiFT"),
        ("cosyvoice", "spk2info.pt", b"garbage", r"spk2info.pt: refused: not a tensors-only torch file"),
        ("cosyvoice", "speech_tokenizer_v3.onnx", b"not onnx", r"not a readable S3 tokenizer ONNX file"),
    ],
)
def test_each_missing_or_malformed_file_is_named(official, tmp_path, where, name, content, message):
    fac, cv = broken_copy(official, tmp_path, where, name, content)
    with pytest.raises(ValueError, match=message):
        import_official(fac, cv, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".tmp-*"))


def test_a_checkpoint_that_does_not_fit_its_config_is_refused(official, tmp_path):
    fac, cv = broken_copy(official, tmp_path, "fac", "config.json", None)
    config = json.loads((official[1] / "config.json").read_text())
    config["text_config"]["intermediate_size"] += 8
    (fac / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError,
        match=r"does not fit its config.json; mis-shaped keys: language_model.model.layers.0.mlp.down_proj",
    ):
        import_official(fac, cv, tmp_path / "out")


def test_a_pickled_object_is_never_loaded(official, tmp_path):
    fac, cv = broken_copy(official, tmp_path, "cosyvoice", "flow.pt", None)

    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    torch.save({"weight": Evil()}, cv / "flow.pt")
    with pytest.raises(ValueError, match="refused: not a tensors-only torch file"):
        import_official(fac, cv, tmp_path / "out")
