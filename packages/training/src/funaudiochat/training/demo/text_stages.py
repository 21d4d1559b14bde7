"""The text stages of the demo recipe: the corpus, the text tokenizer and the text LLM."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .context import RECIPES, StageContext, fit_recipe, llm_fit
from .corpus import SPLITS, knowledge_pairs, write_corpus
from .family import TASKS

QA_TASKS = ("arithmetic", "compare", "fact", "instruction")  # the tasks answered by speech


def corpus_pairs(corpus_folder: Path, splits: Sequence[str], tasks: Sequence[str] = QA_TASKS) -> list[dict]:
    """The corpus pairs (``corpus.jsonl`` records) of ``splits`` and ``tasks``."""
    lines = (corpus_folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line]
    return [r for r in records if r["split"] in splits and r["task"] in tasks]


def greedy_replies(model, tokenizer, questions: Sequence[str], system: str | None = None) -> list[str]:
    """A causal LM's greedy reply (at most 48 tokens) to each of ``questions``, as the stages score it;
    ``system``: the system prompt (None: the text prompt the text LLM is trained with)."""
    from ..llm.text_lm import DEFAULT_S2T_PROMPT, generate_answer

    system = DEFAULT_S2T_PROMPT if system is None else system
    return [generate_answer(model, tokenizer, q, system=system, max_new_tokens=48) for q in questions]


def text_accuracy(model, tokenizer, pairs: Sequence[dict]) -> dict[str, Any]:
    """``greedy_replies`` to ``pairs`` scored by their keys: overall and per task."""
    from .corpus import contains_key

    right: dict[str, list[bool]] = {}
    replies = greedy_replies(model, tokenizer, [pair["question"] for pair in pairs])
    for pair, reply in zip(pairs, replies, strict=True):
        right.setdefault(pair["task"], []).append(contains_key(reply, pair["key"]))
    every = [ok for oks in right.values() for ok in oks]
    return {
        "accuracy": sum(every) / max(1, len(every)),
        "pairs": len(every),
        "per_task": {task: sum(oks) / len(oks) for task, oks in sorted(right.items())},
    }


def run_corpus(build: StageContext) -> dict[str, Any]:
    out = build.folder("corpus")
    write_corpus(out, build.settings.seed)
    stats = json.loads((out / "stats.json").read_text())
    return {"pairs": stats["pairs"]}


def tokenizer_texts(corpus_folder: Path) -> list[str]:
    """Every text the demo model reads or writes: the corpus' questions and answers, the system prompts,
    the ASR instruction, the function-calling prompt with the tool schemas, and each tool call."""
    from funaudiochat.drsr.prompts import (
        ASR_INSTRUCTION,
        DEFAULT_S2M_PROMPT,
        DEFAULT_S2T_PROMPT,
        format_tool_call,
        function_calling_prompt,
    )

    tools = json.loads((corpus_folder / "tools.json").read_text())
    texts = [DEFAULT_S2M_PROMPT, DEFAULT_S2T_PROMPT, ASR_INSTRUCTION, function_calling_prompt(tools)]
    for pair in corpus_pairs(corpus_folder, SPLITS, TASKS):
        texts += [pair["question"], pair["answer"]]
        if pair.get("tool_call"):
            texts.append(format_tool_call(pair["tool_call"]["name"], pair["tool_call"]["arguments"]))
    return texts


def run_text_tokenizer(build: StageContext) -> dict[str, Any]:
    from funaudiochat.base.atomic import atomic_folder
    from funaudiochat.drsr.processing import FunAudioChatProcessor
    from funaudiochat.drsr.text_tokenizer import train_text_tokenizer

    texts = tokenizer_texts(build.require("corpus", "text_tokenizer"))
    out = build.folder("text_tokenizer")
    if (out / "tokenizer.json").is_file():  # trained already (restored: ``products``)
        tokenizer = FunAudioChatProcessor.from_pretrained(out).tokenizer
    else:
        tokenizer = train_text_tokenizer(texts, vocab_size=build.settings.text_vocab_size)
        with atomic_folder(out) as staging:
            FunAudioChatProcessor(tokenizer).save_pretrained(staging)
    lengths = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
    return {
        "vocab_size": len(tokenizer),
        "texts": len(texts),
        "mean_tokens_per_text": sum(lengths) / len(texts),
    }


SKILL_TASKS = ("tool", "asr")  # what a pretrained LLM can do besides knowing: call tools, copy text


def text_lm_pairs(
    seed: int,
    per_content: int,
    tools: list[dict],
    skills: bool = False,
    copies: int = 0,
    tool_repeats: int = 0,
    practice: int = 0,
) -> list[dict]:
    """The text LLM's training pairs: ``knowledge_pairs`` of ``QA_TASKS`` and, with ``skills``, of
    ``SKILL_TASKS`` too, in the text form of their speech rows (``speech_stages.conversation_for``): a tool
    request answered with its ``<tool_call>`` under the function-calling system prompt of ``tools``, and
    a sentence followed by the ASR instruction answered with the sentence itself (what the speech model
    does when it hears the sentence instead of reading it). Each record is ``{"question", "answer",
    "content", "task"}``, plus ``"system"`` where it is not the default text prompt.

    Args:
        seed: the corpus seed (held-out phrasings stay out). per_content: phrasings per content item.
        tools: the tool schemas (``corpus/tools.json``). skills: include the skill tasks.
        copies: with ``skills``, that many more copy pairs (task ``"copy"``) of sentences spliced from the
            training split's questions and answers (``spliced_speech.splice_sentences``, seeded by
            ``seed + 1``): sentences no pair has, so the LLM learns to copy any words, not a list of
            sentences (from the transcription pairs alone it copied 98 % of those sentences and 29 % of
            held-out ones: "She wore a grey hat." came back as "School starts in Madrid.").
        tool_repeats: with ``skills``, every tool content in every training phrasing, that many times
            over (the city or the minutes has to be copied from the request into the call, which the
            ``per_content`` pairs, 1 % of them, did not teach).
        practice: practice phrasings of each kind per content item (``corpus.knowledge_pairs``)."""
    from funaudiochat.drsr.prompts import ASR_INSTRUCTION, format_tool_call, function_calling_prompt

    from .corpus import build_corpus
    from .spliced_speech import splice_sentences

    records = knowledge_pairs(seed, QA_TASKS + (SKILL_TASKS if skills else ()), per_content, practice)
    if skills and copies > 0:
        texts = [text for p in build_corpus(seed) if p.split == "train" for text in (p.question, p.answer)]
        for sentence in splice_sentences(texts, copies, seed + 1):
            question = f"{sentence} {ASR_INSTRUCTION}"
            records.append({"question": question, "answer": sentence, "content": "copy", "task": "copy"})
    if skills and tool_repeats > 0:
        from .tool_calls import tool_families

        phrasings = max(len(family.templates) for family in tool_families())
        every_phrasing = knowledge_pairs(seed, ("tool",), per_content=phrasings)
        records += [json.loads(json.dumps(r)) for _ in range(tool_repeats) for r in every_phrasing]
    calling = function_calling_prompt(tools)
    for record in records:
        if record["task"] == "tool":
            call = record.pop("tool_call")
            record.update(answer=format_tool_call(call["name"], call["arguments"]), system=calling)
        elif record["task"] == "asr":
            record.update(question=f"{record['question']} {ASR_INSTRUCTION}", answer=record["question"])
    return records


# the LLM of FunAudioChatConfig.tiny (tests)
TINY_TEXT_LM = dict(hidden_size=64, num_hidden_layers=2, head_dim=16, intermediate_size=128)


def size_overrides(size: str) -> list[str]:
    """The ``text_lm`` recipe's overrides for ``text_lm_size``: none for "demo" (the recipe's sizes), the
    ``TINY_TEXT_LM`` fields for "tiny"."""
    return [f"model.llm.{key}={value}" for key, value in TINY_TEXT_LM.items()] if size == "tiny" else []


def text_lm_width(size: str) -> int:
    """The hidden size of the text LLM ``text_lm`` trains at ``text_lm_size`` (the recipe's, or
    ``TINY_TEXT_LM``'s), known before it is trained."""
    if size == "tiny":
        return TINY_TEXT_LM["hidden_size"]
    from omegaconf import OmegaConf

    return int(OmegaConf.load(RECIPES / "text_lm.yaml").model.llm.hidden_size)


def run_text_lm(build: StageContext) -> dict[str, Any]:
    from funaudiochat.base.atomic import atomic_write_text
    from transformers import AutoModelForCausalLM, AutoTokenizer

    corpus = build.require("corpus", "text_lm")
    tokenizer_folder = build.require("text_tokenizer", "text_lm")
    out = build.folder("text_lm")
    out.mkdir(parents=True, exist_ok=True)
    # the LLM stands in for a pretrained one that knows the facts: it learns every content, the held-out
    # contents included (the speech stages never see those), each in ``knowledge_per_content`` training
    # phrasings, and never a held-out phrasing
    tools = json.loads((corpus / "tools.json").read_text(encoding="utf-8"))
    settings = build.settings
    if settings.text_lm_copies_from_start and not settings.text_lm_skills:
        raise ValueError("text_lm_copies_from_start adds to the skills of text_lm_skills=true; set both")
    copies = settings.text_lm_copies if settings.text_lm_copies_from_start else 0
    skills = settings.text_lm_skills
    train = text_lm_pairs(settings.seed, settings.knowledge_per_content, tools, skills, copies)
    lines = "".join(json.dumps(r) + "\n" for r in train)  # question, answer, content, task[, system]
    atomic_write_text(out / "pairs.jsonl", lines)
    overrides = [
        f"data.train={out / 'pairs.jsonl'}",
        f"data.tokenizer={tokenizer_folder}",
        f"trainer.max_steps={settings.text_lm_steps}",
        f"data.num_buckets={settings.text_lm_buckets}",
        f"model.export_dir={out / 'model'}",
        f"seed={settings.seed}",
    ]
    if settings.text_lm_skills:  # the function-calling prompt alone is ~450 tokens (the recipe allows 512)
        overrides.append("data.max_length=1024")
    overrides += size_overrides(settings.text_lm_size)
    fit_recipe("text_lm", out / "run", overrides, product=out / "model", **llm_fit(build.settings))
    model = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    heldout = corpus_pairs(corpus, ["heldout_phrasing"])[: settings.pairs_per_file]
    return {"train_pairs": len(train), "heldout": text_accuracy(model, tokenizer, heldout)}


def run_text_lm_copy(build: StageContext) -> dict[str, Any]:
    """The text LLM of ``text_lm`` continued for ``text_lm_copy_steps`` on its own pairs plus
    ``text_lm_copies`` copy pairs (``text_lm_pairs``), its input embeddings frozen: the speech stages'
    tower is trained against those embeddings and stays valid. With 0 steps the LLM is copied as is."""
    import shutil

    from funaudiochat.base.atomic import atomic_folder, atomic_write_text
    from transformers import AutoModelForCausalLM, AutoTokenizer

    corpus = build.require("corpus", "text_lm_copy")
    base = build.require("text_lm", "text_lm_copy") / "model"
    out = build.folder("text_lm_copy")
    out.mkdir(parents=True, exist_ok=True)
    settings = build.settings
    model = out / "model"
    if settings.text_lm_copy_steps == 0:
        if not model.exists():
            with atomic_folder(model) as staging:
                shutil.copytree(base, staging, dirs_exist_ok=True)
        return {"steps": 0, "model": str(model)}
    if not settings.text_lm_skills:
        raise ValueError("text_lm_copy_steps > 0 continues the skills of text_lm_skills=true; set both")
    tools = json.loads((corpus / "tools.json").read_text(encoding="utf-8"))
    train = text_lm_pairs(
        settings.seed,
        settings.knowledge_per_content,
        tools,
        True,
        settings.text_lm_copies,
        settings.text_lm_copy_tools,
        settings.text_lm_copy_practice,
    )
    atomic_write_text(out / "pairs.jsonl", "".join(json.dumps(r) + "\n" for r in train))
    overrides = [
        f"data.train={out / 'pairs.jsonl'}",
        f"data.tokenizer={base}",
        "data.max_length=1024",
        f"trainer.max_steps={settings.text_lm_copy_steps}",
        f"data.num_buckets={settings.text_lm_buckets}",
        f"model.lr={settings.text_lm_copy_lr}",
        f"model.init_weights={base}",
        "model.freeze=[model.embed_tokens]",
        f"model.export_dir={model}",
        f"seed={settings.seed}",
    ]
    overrides += size_overrides(settings.text_lm_size)
    fit_recipe("text_lm", out / "run", overrides, product=model, **llm_fit(build.settings))
    llm = AutoModelForCausalLM.from_pretrained(model).eval()
    tokenizer = AutoTokenizer.from_pretrained(model)
    heldout = corpus_pairs(corpus, ["heldout_phrasing"])[: settings.pairs_per_file]
    sentences = corpus_pairs(corpus, ["heldout_phrasing", "heldout_content"], ("asr",))
    return {
        "steps": settings.text_lm_copy_steps,
        "train_pairs": len(train),
        "heldout": text_accuracy(llm, tokenizer, heldout),
        "copied": copy_accuracy(llm, tokenizer, sentences[: settings.pairs_per_file]),
    }


def copy_accuracy(model, tokenizer, pairs: Sequence[dict]) -> dict[str, Any]:
    """How often a causal LM copies a held-out sentence under the ASR instruction word for word (greedy;
    ``pairs``: corpus records of the "asr" task, whose ``answer`` is the sentence)."""
    from funaudiochat.drsr.prompts import ASR_INSTRUCTION

    sentences = [pair["answer"].strip() for pair in pairs]
    copies = greedy_replies(model, tokenizer, [f"{sentence} {ASR_INSTRUCTION}" for sentence in sentences])
    right = [copy.strip() == sentence for copy, sentence in zip(copies, sentences, strict=True)]
    return {"accuracy": sum(right) / max(1, len(right)), "sentences": len(right)}
