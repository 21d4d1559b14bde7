"""Flow-matching training learns: a tiny flow trained on espeak-ng speech for 40 steps lowers its loss."""

import json
import statistics

import lightning as L
import pytest
from funaudiochat.training.config import build_config
from funaudiochat.training.vocoder import FlowMatchingModule, VocoderDataModule
from funaudiochat.vocoder import CausalFlowMatching, FlowConfig
from safetensors import safe_open


def test_flow_loss_falls(speech_dir, tmp_path, quiet_trainer, recorder):
    L.seed_everything(0, workers=True)
    data = VocoderDataModule(train=speech_dir, task="flow", batch_size=4, speaker_from="stem", max_tokens=60)
    export = tmp_path / "flow.safetensors"
    module = FlowMatchingModule(
        flow={"preset": "tiny"}, lr=1e-3, weight_decay=0.0, warmup_steps=2, export_path=str(export)
    )
    record = recorder("train/loss")
    trainer = L.Trainer(max_steps=40, callbacks=[record], **quiet_trainer)
    trainer.fit(module, datamodule=data)

    losses = record.values["train/loss"]
    assert len(losses) == 40
    first, last = statistics.mean(losses[:5]), statistics.mean(losses[-5:])
    print(f"flow loss: first 5 steps {first:.3f}, last 5 steps {last:.3f}")
    assert last < 0.5 * first

    with safe_open(str(export), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "funaudiochat-vocoder-flow"
    assert build_config(FlowConfig, json.loads(meta["config"])) == FlowConfig.tiny()
    flow = CausalFlowMatching.from_pretrained(export, FlowConfig.tiny())
    for name, value in module.flow.state_dict().items():
        assert (flow.state_dict()[name] == value).all(), name


def test_flow_module_errors():
    with pytest.raises(ValueError, match="schedule"):
        FlowMatchingModule(flow={"preset": "tiny"}, schedule="steps")
    with pytest.raises(ValueError, match="safetensors"):
        FlowMatchingModule(flow={"preset": "tiny"}, export_path="flow.pt")
    with pytest.raises(ValueError, match="FlowConfig"):
        FlowMatchingModule(flow={"layers": 2})
