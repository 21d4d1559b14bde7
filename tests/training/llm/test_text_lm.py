"""The ``text_lm`` stage: a tiny Qwen3 trained on 20 arithmetic question -> answer chats memorises them
(greedy answers reproduce the trained ones), the loss covers only the answers, the export loads as a
Hugging Face causal LM and as the LLM of a Fun-Audio-Chat model (``llm_from``), and the recipe runs and
resumes through ``funaudiochat-train``."""

import csv
import json
from pathlib import Path

import lightning as L
import pytest
import torch
from funaudiochat.drsr import FunAudioChatForConditionalGeneration
from funaudiochat.drsr.processing import FunAudioChatProcessor
from funaudiochat.drsr.prompts import DEFAULT_S2T_PROMPT
from funaudiochat.drsr.text_tokenizer import IM_END, special_token_ids, train_text_tokenizer
from funaudiochat.training import cli
from funaudiochat.training.data import IGNORE_INDEX
from funaudiochat.training.llm.module import load_llm, tiny_config_for
from funaudiochat.training.llm.text_lm import (
    TextChatDataModule,
    TextLMModule,
    encode_pair,
    generate_answer,
    prompt_ids,
    read_text_pairs,
)

RECIPE = Path(__file__).resolve().parents[3] / "packages" / "training" / "recipes" / "text_lm.yaml"
WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen"
).split()


def arithmetic_pairs(count: int = 20) -> list[tuple[str, str]]:
    """``count`` distinct "What is a plus b?" -> "A plus b is c." pairs (a, b < 10)."""
    pairs: dict[str, str] = {}
    for i in range(100):
        a, b = (i * 7) % 10, (i * 3 + 1) % 9
        pairs.setdefault(
            f"What is {WORDS[a]} plus {WORDS[b]}?",
            f"{WORDS[a].capitalize()} plus {WORDS[b]} is {WORDS[a + b]}.",
        )
        if len(pairs) == count:
            break
    return list(pairs.items())


PAIRS = arithmetic_pairs()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """``(train.jsonl, tokenizer folder)``: the pairs (with an extra ``id`` key) and a BPE trained on them."""
    root = tmp_path_factory.mktemp("text_lm")
    train = root / "train.jsonl"
    rows = [{"id": f"p{i}", "question": q, "answer": a} for i, (q, a) in enumerate(PAIRS)]
    train.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tokenizer = train_text_tokenizer([f"{q} {a}" for q, a in PAIRS] + [DEFAULT_S2T_PROMPT], vocab_size=400)
    tokenizer.save_pretrained(root / "tokenizer")
    return train, root / "tokenizer"


def test_labels_cover_only_the_answer_and_its_im_end(corpus):
    train, tokenizer_dir = corpus
    data = TextChatDataModule(train=str(train), tokenizer=str(tokenizer_dir), batch_size=4)
    data.setup("fit")
    tokenizer = data.tokenizer
    question, answer = PAIRS[0]
    ids, labels = encode_pair(tokenizer, question, answer)
    trained = [i for i, t in enumerate(labels) if t != IGNORE_INDEX]
    assert trained == list(range(trained[0], trained[-1] + 1)), "the answer is one span"
    assert [labels[i] for i in trained] == ids[trained[0] : trained[-1] + 1]
    assert tokenizer.decode(ids[trained[0] : trained[-1] + 1]) == answer + IM_END
    assert ids[: trained[0]] == prompt_ids(tokenizer, question), "training reads the generation prompt"
    assert tokenizer.decode(ids[trained[-1] + 1 :]) == "\n"
    rendered = tokenizer.apply_chat_template(
        [
            {"role": "system", "content": DEFAULT_S2T_PROMPT},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ],
        tokenize=False,
    )
    assert tokenizer.decode(ids) == rendered

    pad = special_token_ids(tokenizer).pad
    items = [data.train_set[i] for i in (0, 5, 11)]
    batch = data.collate(items)
    width = max(len(item["input_ids"]) for item in items)
    assert {k: tuple(v.shape) for k, v in batch.items()} == {
        "input_ids": (3, width),
        "attention_mask": (3, width),
        "labels": (3, width),
    }
    for row, item in enumerate(items):
        n = len(item["input_ids"])
        assert torch.equal(batch["input_ids"][row, :n], item["input_ids"])
        assert torch.equal(batch["labels"][row, :n], item["labels"])
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        assert (batch["input_ids"][row, n:] == pad).all() and (batch["labels"][row, n:] == IGNORE_INDEX).all()


def test_training_memorises_the_answers_and_exports_a_loadable_llm(corpus, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    train, tokenizer_dir = corpus
    L.seed_everything(0)
    export = tmp_path / "model"
    module = TextLMModule(
        tokenizer=str(tokenizer_dir), llm={"preset": "tiny"}, lr=3e-3, warmup_steps=10, export_dir=str(export)
    )
    data = TextChatDataModule(train=str(train), tokenizer=str(tokenizer_dir), batch_size=8)
    losses = []

    class Losses(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = L.Trainer(
        max_steps=150,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        callbacks=[Losses()],
    )
    trainer.fit(module, datamodule=data)
    # seeded: 5.7 over the first 5 steps (log 431 = 6.1: the vocabulary), 0.13 over the last 5
    assert sum(losses[-5:]) / 5 < 0.1 * sum(losses[:5]) / 5, losses

    answers = [generate_answer(module.model, module.tokenizer, q) for q, _ in PAIRS]
    right = sum(got == want for got, (_, want) in zip(answers, PAIRS, strict=True))
    assert right >= 0.8 * len(PAIRS), list(zip(answers, PAIRS, strict=True))  # seeded: 20 of 20

    # the export: a Hugging Face causal LM with its tokenizer, the same weights, the same greedy answer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"], "no temporary folder is left behind"
    model = AutoModelForCausalLM.from_pretrained(export).eval()
    tokenizer = AutoTokenizer.from_pretrained(export)
    assert (
        type(model).__name__ == "Qwen3ForCausalLM" and tokenizer.get_vocab() == module.tokenizer.get_vocab()
    )
    question = PAIRS[3][0]
    prompt = torch.tensor([prompt_ids(tokenizer, question)])
    with torch.no_grad():
        reference = module.model.eval()(input_ids=prompt).logits
        torch.testing.assert_close(model(input_ids=prompt).logits, reference)
        # the cached greedy loop agrees with transformers' own greedy search
        greedy = model.generate(prompt, max_new_tokens=20, do_sample=False)[0, prompt.shape[1] :].tolist()
    im_end = special_token_ids(tokenizer).im_end
    assert im_end in greedy, greedy
    assert generate_answer(model, tokenizer, question) == tokenizer.decode(greedy[: greedy.index(im_end)])

    # the speech model's LLM (FunAudioChatConfig.tiny for this tokenizer) takes the export strictly
    speech = FunAudioChatForConditionalGeneration(tiny_config_for(FunAudioChatProcessor(tokenizer))).eval()
    text_config = speech.config.text_config
    for key in (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "intermediate_size",
        "rms_norm_eps",
        "tie_word_embeddings",
        "rope_parameters",
        "eos_token_id",
        "pad_token_id",
        "audio_bos_index",
        "audio_eos_index",
        "sil_index",
    ):
        assert getattr(text_config, key) == getattr(model.config, key), key
    load_llm(speech, export)
    with torch.no_grad():
        torch.testing.assert_close(speech.language_model(input_ids=prompt).logits, reference)


def test_model_and_data_must_share_the_tokenizer(corpus, tmp_path):
    train, tokenizer_dir = corpus
    other = tmp_path / "other"
    train_text_tokenizer(["a different corpus, other merges"], vocab_size=300).save_pretrained(other)
    module = TextLMModule(tokenizer=str(other), llm={"preset": "tiny"})
    data = TextChatDataModule(train=str(train), tokenizer=str(tokenizer_dir))
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(ValueError, match="data.tokenizer and model.tokenizer differ"):
        trainer.fit(module, datamodule=data)


def test_a_fit_continues_from_an_export_with_frozen_embeddings(corpus, tmp_path):
    """``init_weights`` starts from an export (its folder or its safetensors file) instead of random
    weights; ``freeze`` keeps the named parameters where they were while the rest learns; a wrong shape
    or an unknown prefix is a clear error."""
    train, tokenizer_dir = corpus
    first = TextLMModule(tokenizer=str(tokenizer_dir), llm={"preset": "tiny"}, init_seed=1)
    first.export(tmp_path / "first")
    module = TextLMModule(
        tokenizer=str(tokenizer_dir),
        llm={"preset": "tiny"},
        lr=3e-3,
        init_weights=str(tmp_path / "first"),
        freeze=["model.embed_tokens"],
    )
    before = {name: p.detach().clone() for name, p in module.model.named_parameters()}
    for name, param in first.model.named_parameters():
        torch.testing.assert_close(before[name], param.detach())
    data = TextChatDataModule(train=str(train), tokenizer=str(tokenizer_dir), batch_size=8)
    trainer = L.Trainer(
        max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu"
    )
    trainer.fit(module, datamodule=data)
    after = dict(module.model.named_parameters())
    torch.testing.assert_close(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])
    assert not torch.equal(after["lm_head.weight"], before["lm_head.weight"])
    assert not torch.equal(
        after["model.layers.0.mlp.up_proj.weight"], before["model.layers.0.mlp.up_proj.weight"]
    )
    file = tmp_path / "first" / "model.safetensors"
    again = TextLMModule(tokenizer=str(tokenizer_dir), llm={"preset": "tiny"}, init_weights=str(file))
    torch.testing.assert_close(again.model.lm_head.weight, first.model.lm_head.weight)
    with pytest.raises(ValueError, match="model.freeze: 'model.embeddings' names no parameter"):
        TextLMModule(tokenizer=str(tokenizer_dir), llm={"preset": "tiny"}, freeze=["model.embeddings"])
    with pytest.raises(ValueError, match="init_weights"):
        TextLMModule(
            tokenizer=str(tokenizer_dir), llm={"preset": "tiny", "hidden_size": 32}, init_weights=str(file)
        )


def test_every_bad_line_is_reported_with_its_number(tmp_path):
    bad = tmp_path / "pairs.jsonl"
    lines = [
        json.dumps({"question": "What is one plus one?", "answer": "Two.", "task": "extra keys are fine"}),
        '{"question": "broken"',
        "",
        json.dumps({"question": "No answer?"}),
        json.dumps({"question": "", "answer": "Empty question."}),
        json.dumps(["not", "an", "object"]),
    ]
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError) as err:
        read_text_pairs(bad)
    message = str(err.value)
    assert "4 problems" in message
    for line, field in ((2, "json"), (4, "answer"), (5, "question"), (6, "json")):
        assert f"{bad}:{line}: {field}:" in message, message
    assert f"{bad}:1:" not in message

    good = tmp_path / "good.jsonl"
    good.write_text(lines[0] + "\n\n" + json.dumps({"question": " Hi? ", "answer": "Hello."}) + "\n")
    assert [(p.question, p.answer, p.line) for p in read_text_pairs(good)] == [
        ("What is one plus one?", "Two.", 1),
        ("Hi?", "Hello.", 3),
    ]


def test_a_pair_may_bring_its_own_system_prompt(corpus, tmp_path):
    _, tokenizer_dir = corpus
    question, answer = PAIRS[0]
    own = "Answer in numbers."
    train = tmp_path / "pairs.jsonl"
    rows = [{"question": question, "answer": answer, "system": own}, {"question": question, "answer": answer}]
    train.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert [p.system for p in read_text_pairs(train)] == [own, None]
    data = TextChatDataModule(train=str(train), tokenizer=str(tokenizer_dir), batch_size=2)
    data.setup("fit")
    first, second = (data.train_set[i]["input_ids"].tolist() for i in (0, 1))
    assert first == encode_pair(data.tokenizer, question, answer, own)[0]
    assert second == encode_pair(data.tokenizer, question, answer)[0]  # the module's DEFAULT_S2T_PROMPT
    assert own in data.tokenizer.decode(first) and DEFAULT_S2T_PROMPT not in data.tokenizer.decode(first)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": question, "answer": answer, "system": ""}) + "\n")
    with pytest.raises(ValueError, match=rf"{bad}:1: system:"):
        read_text_pairs(bad)


def cli_overrides(train: Path, tokenizer: Path, run: Path, steps: int) -> list[str]:
    return [
        f"data.train={train}",
        f"data.tokenizer={tokenizer}",
        "data.batch_size=6",
        "data.num_buckets=2",
        "model.llm={preset: tiny}",
        "model.lr=3e-3",
        "model.total_steps=8",
        f"trainer.default_root_dir={run}",
        f"trainer.max_steps={steps}",
        "trainer.accelerator=cpu",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.callbacks=[{checkpoint: {every_n_train_steps: 1, save_last: true}}]",
    ]


def logged_losses(run: Path, version: int = 0) -> dict[int, float]:
    """``{step: train/loss}`` of one run's CSV log."""
    with (run / "logs" / f"version_{version}" / "metrics.csv").open() as f:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")}


def test_recipe_runs_and_resumes_through_the_cli(corpus, tmp_path):
    train, tokenizer_dir = corpus
    recipe = cli.resolve(
        cli.load_recipe([RECIPE], [f"data.train={train}", f"data.tokenizer={tokenizer_dir}"])
    )
    assert recipe["stage"] == "text_lm"
    assert recipe["model"]["tokenizer"] == recipe["data"]["tokenizer"] == str(tokenizer_dir)
    assert recipe["data"]["system"] == DEFAULT_S2T_PROMPT
    assert recipe["model"]["export_dir"] == "runs/text_lm/model"
    with pytest.raises(cli.RecipeError, match="data.train"):
        cli.resolve(cli.load_recipe([RECIPE], [f"data.tokenizer={tokenizer_dir}"]))

    # 8 steps straight, against 5 steps then a resume from the last checkpoint, mid-epoch (4 batches an
    # epoch: 2 length buckets of 10 pairs, 6 + 4 each): the resumed steps log the same losses
    whole = tmp_path / "whole"
    cli.fit([RECIPE], cli_overrides(train, tokenizer_dir, whole, 8))
    reference = logged_losses(whole)
    assert sorted(reference) == list(range(8))
    assert (whole / "config.yaml").is_file() and (whole / "model" / "model.safetensors").is_file()

    cut = tmp_path / "cut"
    cli.fit([RECIPE], cli_overrides(train, tokenizer_dir, cut, 5))
    last = next(cut.rglob("last.ckpt"))
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 5
    cli.fit([RECIPE], [*cli_overrides(train, tokenizer_dir, cut, 8), f"ckpt_path={last}"])
    assert sorted(logged_losses(cut, 1)) == [5, 6, 7], "the second run trains the last 3 steps only"
    resumed = {**logged_losses(cut, 0), **logged_losses(cut, 1)}
    for step in range(8):
        assert resumed[step] == pytest.approx(reference[step], rel=1e-5, abs=1e-6), (step, resumed, reference)
    from safetensors.torch import load_file

    straight, again = (
        load_file(whole / "model" / "model.safetensors"),
        load_file(cut / "model" / "model.safetensors"),
    )
    assert straight.keys() == again.keys()
    for key, value in straight.items():
        torch.testing.assert_close(again[key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_a_compiled_fit_learns_as_the_eager_one_and_exports_the_same_names(corpus, tmp_path):
    """``compile=true``: the text LLM (the stage's ``compile_targets``) runs through ``torch.compile``;
    its losses follow the eager run's (the same computation, fused: float rounding apart), its export has
    the eager one's tensor names, and it resumes an eager run's checkpoint."""
    from safetensors.torch import load_file

    train, tokenizer_dir = corpus
    recipe = cli.resolve(cli.load_recipe([RECIPE], [*cli_overrides(train, tokenizer_dir, tmp_path, 3)]))
    module, _, _ = cli.build(dict(recipe, compile=True))
    assert module.model._compiled_call_impl is not None  # nn.Module.compile, in place
    assert not any("_orig_mod" in name for name in module.state_dict())

    eager, compiled, resumed = tmp_path / "eager", tmp_path / "compiled", tmp_path / "resumed"
    cli.fit([RECIPE], cli_overrides(train, tokenizer_dir, eager, 3))
    cli.fit([RECIPE], [*cli_overrides(train, tokenizer_dir, compiled, 3), "compile=true"])
    for step, loss in logged_losses(eager).items():
        assert logged_losses(compiled)[step] == pytest.approx(loss, rel=2e-3), step
    exported = [load_file(run / "model" / "model.safetensors") for run in (eager, compiled)]
    assert exported[0].keys() == exported[1].keys()

    cli.fit([RECIPE], cli_overrides(train, tokenizer_dir, resumed, 2))
    last = next(resumed.rglob("last.ckpt"))
    cli.fit([RECIPE], [*cli_overrides(train, tokenizer_dir, resumed, 3), "compile=true", f"ckpt_path={last}"])
    assert logged_losses(resumed, 1)[2] == pytest.approx(logged_losses(eager)[2], rel=2e-3)
