"""Pre-alignment / SFT / LoRA and Core-Cocktail on the tiny model of the official-code goldens (a real
official-layout batch: tests/drsr/golden/forward.safetensors, made by the official modeling code)."""

import statistics
from pathlib import Path

import lightning as L
import pytest
import torch
from funaudiochat.drsr import FunAudioChatForConditionalGeneration
from funaudiochat.training.llm import SpeechLLMModule
from funaudiochat.training.llm.core_cocktail import CoreCocktailModule, stage_lr
from safetensors.torch import load_file

GOLDEN = Path(__file__).parents[2] / "drsr" / "golden"
TINY = str(GOLDEN / "tiny_official")
KEYS = [
    "input_ids",
    "attention_mask",
    "position_ids",
    "labels",
    "input_features",
    "feature_attention_mask",
    "speech_ids",
    "speech_attention_mask",
    "text_ids",
    "text_attention_mask",
    "feature_exist_mask",
]


@pytest.fixture(scope="module")
def batch():
    data = load_file(GOLDEN / "forward.safetensors")
    return {k: data[k] for k in KEYS}


class Recorder(L.Callback):
    """Losses, learning rates and LLM snapshots per step."""

    def __init__(self):
        self.losses, self.lrs, self.llm_before = [], [], {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def fit(module, batch, steps, callbacks=(), tmp_path=None, **trainer_kwargs):
    trainer = L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
        default_root_dir=tmp_path,
        **trainer_kwargs,
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader([batch] * steps, batch_size=None))
    return trainer


def llm_state(model):
    return {k: v.detach().clone() for k, v in model.language_model.state_dict().items()}


def test_pre_alignment_trains_only_the_speech_modules(batch, tmp_path):
    L.seed_everything(0)
    module = SpeechLLMModule(
        model=TINY, freeze=["language_model"], lr=3e-3, schedule="constant", export_dir=str(tmp_path / "out")
    )
    llm0 = llm_state(module.model)
    srh0 = module.model.audio_invert_tower.pre_matching.weight.detach().clone()
    rec = Recorder()
    fit(module, batch, 12, [rec])
    assert sum(rec.losses[-3:]) / 3 < 0.8 * sum(rec.losses[:3]) / 3, rec.losses
    assert all(torch.equal(v, llm0[k]) for k, v in module.model.language_model.state_dict().items())
    assert not torch.equal(module.model.audio_invert_tower.pre_matching.weight, srh0)
    exported = FunAudioChatForConditionalGeneration.from_pretrained(tmp_path / "out")
    assert torch.equal(
        exported.audio_invert_tower.pre_matching.weight, module.model.audio_invert_tower.pre_matching.weight
    )


def test_lora_learns_and_exports_in_the_official_layout(batch, tmp_path):
    L.seed_everything(0)
    module = SpeechLLMModule(
        model=TINY, lora={"r": 4, "alpha": 8}, freeze=["audio_invert_tower"], lr=3e-3, schedule="constant"
    )
    base_q = module.model.language_model.model.layers[0].self_attn.q_proj.base_layer.weight.detach().clone()
    rec = Recorder()
    fit(module, batch, 10, [rec])
    # the same batch every step: a smooth curve; seeded, the last 3 steps average 0.91 x the first 3
    first, last = statistics.mean(rec.losses[:3]), statistics.mean(rec.losses[-3:])
    assert last < 0.95 * first, rec.losses
    layer = module.model.language_model.model.layers[0].self_attn.q_proj
    assert torch.equal(layer.base_layer.weight, base_q)  # only the adapters learned
    module.model.eval()
    with torch.no_grad():
        adapted_loss = module.model(**batch).loss
    module.export(tmp_path / "lora")  # adapters merged into the LLM
    exported = FunAudioChatForConditionalGeneration.from_pretrained(tmp_path / "lora").eval()  # strict
    assert not torch.equal(exported.language_model.model.layers[0].self_attn.q_proj.weight, base_q)
    with torch.no_grad():
        torch.testing.assert_close(exported(**batch).loss, adapted_loss, rtol=1e-4, atol=1e-5)


def test_core_cocktail_merges_after_stage_one_and_switches_learning_rate(batch, tmp_path):
    L.seed_everything(0)
    module = CoreCocktailModule(
        model=TINY,
        stage1_steps=3,
        stage2_steps=3,
        stage1_lr=2e-3,
        stage2_lr=2e-4,
        alpha=0.5,
        export_dir=str(tmp_path / "cc"),
    )
    m0 = llm_state(module.model)
    snapshots = {}

    class Snapshot(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 3 and "m1" not in snapshots:
                snapshots["m1"] = llm_state(pl_module.model)  # runs before the module's own hook merges

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 4 and "merged" not in snapshots:
                snapshots["stage"] = pl_module.stage

    original_merge = module.merge_llm

    def merge_and_record():
        original_merge()
        snapshots["merged"] = llm_state(module.model)

    module.merge_llm = merge_and_record
    rec = Recorder()
    fit(module, batch, 6, [Snapshot(), rec])
    for key, merged in snapshots["merged"].items():
        expected = 0.5 * snapshots["m1"][key].float() + 0.5 * m0[key].float()
        assert torch.equal(merged, expected), key
    assert module.merged and module.stage == 2
    expected_lrs = [stage_lr(s, 3, 3, 2e-3, 2e-4, 0.1) for s in range(6)]
    assert rec.lrs == pytest.approx(expected_lrs, rel=1e-6)
    assert FunAudioChatForConditionalGeneration.from_pretrained(tmp_path / "cc") is not None


def test_core_cocktail_resumes_in_stage_two(batch, tmp_path):
    L.seed_everything(0)
    module = CoreCocktailModule(model=TINY, stage1_steps=2, stage2_steps=2, stage1_lr=1e-3, stage2_lr=1e-4)
    trainer = fit(module, batch, 3, tmp_path=tmp_path)
    path = tmp_path / "mid.ckpt"
    trainer.save_checkpoint(path)
    resumed = CoreCocktailModule(model=TINY, stage1_steps=2, stage2_steps=2, stage1_lr=1e-3, stage2_lr=1e-4)
    calls = []
    resumed.merge_llm = lambda: calls.append(1)
    trainer = L.Trainer(
        max_steps=4,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(resumed, torch.utils.data.DataLoader([batch] * 4, batch_size=None), ckpt_path=path)
    assert resumed.merged and not calls  # the merge is not applied twice


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"freeze": ["nothing_here"]}, "names no parameter"),
        (
            {"freeze": ["continuous_audio_tower", "audio_tower", "language_model", "audio_invert_tower"]},
            "nothing would learn",
        ),
        ({"freeze": ["language_model"], "lora": {"r": 2}}, "do not also freeze language_model"),
        ({"lora": {"r": 2, "target_modules": ["no_such_proj"]}}, "matched no layer"),
        ({"lora": {"rank": 2}}, "unknown lora keys"),
        ({"lr": 0.0}, "lr must be > 0"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpeechLLMModule(model=TINY, **kwargs)


def test_bad_model_specs(tmp_path):
    with pytest.raises(ValueError, match="exactly one of 'pretrained'"):
        SpeechLLMModule(model={"seed": 1})
    with pytest.raises(ValueError, match="unknown model preset"):
        SpeechLLMModule(model={"config": {"preset": "huge"}})
    with pytest.raises(ValueError, match="do not also freeze language_model"):
        CoreCocktailModule(model=TINY, lora={"r": 2}, freeze=["language_model"])
    with pytest.raises(ValueError, match="stage1_steps and stage2_steps must be >= 1"):
        CoreCocktailModule(model=TINY, stage1_steps=0)
    with pytest.raises(ValueError, match="base must be 'initial' or a checkpoint folder"):
        CoreCocktailModule(model=TINY, base=str(tmp_path / "missing"))


def test_speech_embedding_std_redraws_the_shared_speech_table():
    from funaudiochat.training.llm.module import build_model

    plain = build_model({"config": {"preset": "tiny"}, "seed": 3})
    wide = build_model({"config": {"preset": "tiny"}, "seed": 3, "speech_embedding_std": 0.3})
    table = wide.audio_tower.embed_tokens
    pad = table.padding_idx
    rows = torch.cat([table.weight[:pad], table.weight[pad + 1 :]])
    assert float(rows.detach().std()) == pytest.approx(0.3, rel=0.05)
    assert float(table.weight[pad].abs().max()) == 0.0
    assert wide.audio_invert_tower.lm_head.weight is table.weight  # still the SRH's head and input
    assert float(plain.audio_tower.embed_tokens.weight.detach().std()) < 0.1
    # nothing else changes
    for (name, a), (_, b) in zip(plain.named_parameters(), wide.named_parameters(), strict=True):
        if name != "audio_tower.embed_tokens.weight":
            assert torch.equal(a, b), name
    for bad, message in [
        ({"config": {"preset": "tiny"}, "speech_embedding_std": 0}, "must be a number > 0"),
        ({"config": {"preset": "tiny"}, "speech_embedding_std": "big"}, "must be a number > 0"),
        ({"pretrained": "some/folder", "speech_embedding_std": 0.3}, "is for a new model"),
    ]:
        with pytest.raises(ValueError, match=message):
            build_model(bad)


# ---- multi-task DPO ----


def rejected_version(batch):
    """The same prompts with worse answers: each answer's text tokens and speech codes reversed in time."""
    bad = {k: v.clone() for k, v in batch.items()}
    for row in range(bad["labels"].shape[0]):
        positions = (bad["labels"][row] != -100).nonzero().squeeze(1)
        positions = positions[bad["input_ids"][row, positions] < 300]  # text tokens, not the audio slots
        bad["labels"][row, positions] = bad["labels"][row, positions.flip(0)]
        bad["input_ids"][row, positions] = bad["input_ids"][row, positions.flip(0)]
    for row in (~bad["feature_exist_mask"]).nonzero().squeeze(1):
        n = int(bad["speech_attention_mask"][row].sum())
        bad["speech_ids"][row, :n] = bad["speech_ids"][row, :n].flip(0)
    return bad


def test_dpo_prefers_the_chosen_answers(batch):
    from funaudiochat.training.llm.dpo import MultiTaskDPOModule

    L.seed_everything(0)
    module = MultiTaskDPOModule(
        model=TINY, beta=0.5, lr=2e-3, schedule="constant", task_weights={"empathy": 2.0, "robustness": 1.0}
    )
    pairs = {"chosen": batch, "rejected": rejected_version(batch), "task": ["empathy", "robustness"]}
    first = module.pair_losses(pairs)
    torch.testing.assert_close(first["margin"], torch.zeros(2), atol=1e-4, rtol=0)  # policy == reference
    rec = Recorder()
    fit(module, pairs, 8, [rec])
    assert rec.losses[0] == pytest.approx(float(torch.log(torch.tensor(2.0))), abs=1e-3)
    first, last = statistics.mean(rec.losses[:3]), statistics.mean(rec.losses[-3:])
    assert last < 0.1 * first, rec.losses  # seeded: about 1e-3 x
    with torch.no_grad():
        assert (module.pair_losses(pairs)["margin"] > 0).all()
    # the reference did not move
    ref = module.reference[0]
    fresh = FunAudioChatForConditionalGeneration.from_pretrained(TINY)
    assert all(
        torch.equal(a, b) for a, b in zip(ref.state_dict().values(), fresh.state_dict().values(), strict=True)
    )


def test_dpo_task_weights_and_errors(batch):
    from funaudiochat.training.llm.dpo import MultiTaskDPOModule

    module = MultiTaskDPOModule(model=TINY, task_weights={"empathy": 3.0, "robustness": 1.0})
    assert module.weights_of(["empathy", "robustness"]).tolist() == [3.0, 1.0]
    with pytest.raises(ValueError, match=r"unknown tasks \['jokes'\]"):
        module.weights_of(["jokes"])
    with pytest.raises(ValueError, match="beta must be > 0"):
        MultiTaskDPOModule(model=TINY, beta=0)
    with pytest.raises(ValueError, match="positive weights"):
        MultiTaskDPOModule(model=TINY, task_weights={"empathy": 0.0})


def test_core_cocktail_with_lora_merges_the_effective_weights(batch, tmp_path):
    """With LoRA the merge scales the adapters by alpha (and averages the frozen base with M0): the
    effective LLM weights become alpha * M1 + (1 - alpha) * M0 exactly as without LoRA."""
    L.seed_everything(0)
    module = CoreCocktailModule(
        model=TINY,
        stage1_steps=3,
        stage2_steps=2,
        stage1_lr=5e-3,
        stage2_lr=5e-4,
        alpha=0.5,
        lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        export_dir=str(tmp_path / "cc"),
    )

    def effective_q(model):
        layer = model.language_model.model.layers[0].self_attn.q_proj
        delta = layer.lora_B["default"].weight @ layer.lora_A["default"].weight * layer.scaling["default"]
        return (layer.base_layer.weight + delta).detach().clone()

    m0 = effective_q(module.model)
    seen = {}
    original = module.merge_llm

    def merge_and_record():
        seen["m1"] = effective_q(module.model)
        original()
        seen["merged"] = effective_q(module.model)

    module.merge_llm = merge_and_record
    fit(module, batch, 5)
    assert not torch.equal(seen["m1"], m0)
    torch.testing.assert_close(seen["merged"], 0.5 * seen["m1"] + 0.5 * m0, rtol=1e-5, atol=1e-6)
    exported = FunAudioChatForConditionalGeneration.from_pretrained(tmp_path / "cc")  # adapters folded in
    assert exported.language_model.model.layers[0].self_attn.q_proj.weight.shape == m0.shape
