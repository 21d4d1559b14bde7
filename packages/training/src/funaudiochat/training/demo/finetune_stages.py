"""The fine-tuning stages of the demo recipe: Core-Cocktail and multi-task DPO on the spoken conversations.

``core_cocktail`` fine-tunes the whole pre-aligned model (the ``core_cocktail`` recipe: stage 1, the merge
of the LLM with the text LLM at ``cocktail_alpha``, stage 2). ``dpo`` prefers the right answer to three
kinds of wrong ones, built from the training conversations by ``preference_rows``:

- ``wrong`` (task "audio_understanding"): another spoken answer (another question's), text and speech;
- ``truncated`` ("robustness"): the right text with its speech cut to its first half;
- ``garbled`` ("robustness"): the right text with its speech codes shuffled in 5-code blocks;
- ``wrong_text`` ("instruction_following"): for the text-only replies (transcripts, tool calls), another
  conversation's reply under the same system prompt.

With ``speech_polish_steps`` the ``dpo`` stage then runs pre-alignment's speaking fit once more on the DPO
model (the SRH and the speech grouping learn, the LLM and the listening path frozen; ``dpo/polish/model``):
the head has shared every Core-Cocktail batch with text-only rows. ``final_model`` is the stage's model.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .context import StageContext, fit_recipe, llm_fit, spoken_data

KIND_TASKS = {
    "wrong": "audio_understanding",
    "truncated": "robustness",
    "garbled": "robustness",
    "wrong_text": "instruction_following",
}
GARBLE_BLOCK = 5  # codes per shuffled block: one 5 Hz step of speech


def _kind_of(conversation) -> tuple:
    """What a conversation's reply is: its system prompt (S2S answers, S2T transcripts, tool calls each
    have their own) and whether it is spoken; a borrowed reply must be of the same kind."""
    from ..data import AssistantSpeech

    return conversation.system, isinstance(conversation.audios[-1], AssistantSpeech)


def _rejected(conversation, kind: str, other, rng: random.Random):
    """``conversation`` with its final reply replaced by a worse one of ``kind`` (``other``: the
    conversation whose reply is borrowed by "wrong" and "wrong_text")."""
    from ..data import AssistantSpeech, Turn

    reply = conversation.audios[-1]
    if kind == "wrong_text":
        turns = [*conversation.turns[:-1], Turn("assistant", other.turns[-1].content)]
        return dataclasses.replace(conversation, turns=turns)
    if not isinstance(reply, AssistantSpeech):
        raise ValueError(f"{conversation.source}: {kind!r} needs a spoken reply")
    if kind == "wrong":
        replaced = dataclasses.replace(reply, text=other.audios[-1].text, codes=other.audios[-1].codes)
    elif kind == "truncated":
        replaced = dataclasses.replace(reply, codes=reply.codes[: max(1, len(reply.codes) // 2)])
    elif kind == "garbled":
        blocks = [reply.codes[i : i + GARBLE_BLOCK] for i in range(0, len(reply.codes), GARBLE_BLOCK)]
        rng.shuffle(blocks)
        codes = np.concatenate(blocks)
        if np.array_equal(codes, reply.codes):  # one block, or a shuffle that changed nothing
            codes = codes[::-1].copy()
        replaced = dataclasses.replace(reply, codes=codes)
    else:
        raise ValueError(f"unknown kind {kind!r}; the kinds are {sorted(KIND_TASKS)}")
    return dataclasses.replace(conversation, audios=[*conversation.audios[:-1], replaced])


def preference_rows(conversations: Sequence, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` DPO rows ``{"task", "chosen", "rejected"}`` (sharegpt objects) drawn from
    ``conversations`` (seeded): spoken replies take the kinds "wrong", "truncated", "garbled" in turn,
    text replies "wrong_text"; a borrowed reply comes from another conversation of the same kind
    (``_kind_of``) with a different reply."""
    from ..data import AssistantSpeech, conversation_to_sharegpt

    rng = random.Random(f"demo-dpo:{seed}")
    by_kind: dict[tuple, list] = {}
    for conversation in conversations:
        by_kind.setdefault(_kind_of(conversation), []).append(conversation)
    chosen = rng.sample(list(conversations), min(count, len(conversations)))
    rows, spoken_count = [], 0
    for conversation in chosen:
        spoken = isinstance(conversation.audios[-1], AssistantSpeech)
        kind = ("wrong", "truncated", "garbled")[spoken_count % 3] if spoken else "wrong_text"
        spoken_count += spoken
        other = None
        if kind in ("wrong", "wrong_text"):
            text = _reply_text(conversation)
            candidates = [c for c in by_kind[_kind_of(conversation)] if _reply_text(c) != text]
            if not candidates:
                continue
            other = rng.choice(candidates)
        rows.append(
            {
                "task": KIND_TASKS[kind],
                "kind": kind,
                "chosen": conversation_to_sharegpt(conversation),
                "rejected": conversation_to_sharegpt(_rejected(conversation, kind, other, rng)),
            }
        )
    return rows


def _reply_text(conversation) -> str:
    from ..data import AssistantSpeech

    reply = conversation.audios[-1]
    return reply.text if isinstance(reply, AssistantSpeech) else conversation.turns[-1].content


def voice_rows(build: StageContext) -> list:
    """The question-answering training questions in more voices (``model_stages.voice_questions``)
    answered in text (``model_stages.answered_in_text``)."""
    from .model_stages import answered_in_text, voice_questions

    return answered_in_text(voice_questions(build, build.require("corpus", "core_cocktail")))


def replayed_text(build: StageContext, count: int) -> list:
    """``count`` of the text LLM's own question-answering training pairs (``corpus.knowledge_pairs`` of
    ``QA_TASKS`` with the text LLM's phrasings per content and practice phrasings, as ``text_lm_copy``
    learnt them; a draw seeded by ``seed``), each a text-only ``Conversation``: the written question
    answered in text under the text prompt the text LLM learnt them with (``DEFAULT_S2T_PROMPT``, also the
    one a written question to the speech model gets)."""
    from funaudiochat.drsr.prompts import DEFAULT_S2T_PROMPT

    from ..data import Conversation, Turn
    from .corpus import knowledge_pairs
    from .text_stages import QA_TASKS

    settings = build.settings
    pairs = knowledge_pairs(
        settings.seed, QA_TASKS, settings.knowledge_per_content, settings.text_lm_copy_practice
    )
    if count > len(pairs):
        raise ValueError(
            f"cocktail_text_pairs={count}: the text LLM has {len(pairs)} question-answering pairs"
        )
    chosen = random.Random(f"demo-cocktail:{settings.seed}:text").sample(pairs, count)
    return [
        Conversation([Turn("user", p["question"]), Turn("assistant", p["answer"])], [], DEFAULT_S2T_PROMPT)
        for p in chosen
    ]


def cocktail_conversations(build: StageContext, conversations: Path, out: Path) -> dict[str, int]:
    """Core-Cocktail's training file ``out`` (written atomically): the conversations of ``conversations``,
    then, with ``cocktail_voice_questions``, ``voice_rows``, then, with ``cocktail_text_pairs``,
    ``replayed_text``; returns how many rows of each were added."""
    from ..data import read_sharegpt, write_sharegpt

    settings = build.settings
    voiced = voice_rows(build) if settings.cocktail_voice_questions and settings.listening_voices > 0 else []
    texts = replayed_text(build, settings.cocktail_text_pairs) if settings.cocktail_text_pairs > 0 else []
    write_sharegpt(out, read_sharegpt(conversations, check_audio=False) + voiced + texts)
    return {"voice_questions": len(voiced), "text_pairs": len(texts)}


def run_core_cocktail(build: StageContext) -> dict[str, Any]:
    start = build.require("pre_alignment", "core_cocktail") / "run" / "model"
    processor = build.require("text_tokenizer", "core_cocktail")
    conversations = build.require("conversations", "core_cocktail")
    settings = build.settings
    run = build.folder("core_cocktail") / "run"
    train = build.folder("core_cocktail") / "train.jsonl"
    added = cocktail_conversations(build, conversations / "train.jsonl", train)
    steps = (settings.cocktail_stage1_steps, settings.cocktail_stage2_steps)
    overrides = [
        f"model.model={start}",
        f"data.train={train}",
        *spoken_data(processor, settings),
        f"model.stage1_steps={steps[0]}",
        f"model.stage2_steps={steps[1]}",
        f"model.alpha={settings.cocktail_alpha}",
        f"model.stage1_lr={settings.cocktail_lr}",
        f"model.stage2_lr={settings.cocktail_lr / 10}",
        f"trainer.max_steps={sum(steps)}",
        f"seed={settings.seed}",
    ]
    fit_recipe("core_cocktail", run, overrides, product=run / "model", **llm_fit(build.settings))
    return {
        "steps": list(steps),
        **added,
        "alpha": settings.cocktail_alpha,
        "lr": settings.cocktail_lr,
        "model": str(run / "model"),
    }


def final_model(dpo_folder: Path) -> Path:
    """The model a ``dpo`` stage folder ends with: the polished one when it was polished, else DPO's."""
    polished = dpo_folder / "polish" / "model"
    return polished if polished.exists() else dpo_folder / "run" / "model"


def polish_speech(build: StageContext, model: Path, conversations: Path, processor: Path, out: Path) -> Path:
    """Pre-alignment's speaking fit (``model_stages.speaking_fit``) for ``speech_polish_steps`` at
    ``speech_polish_lr`` on ``model``, from the spoken replies of ``conversations`` (a sharegpt file), into
    ``out/model``, which it returns."""
    from .model_stages import speaking_fit

    settings = build.settings
    start = {"model": {"model": str(model)}}
    spoken = out / "spoken_replies.jsonl"
    steps, lr = settings.speech_polish_steps, settings.speech_polish_lr
    speaking_fit(build, start, conversations, processor, spoken, out, steps, lr)
    return out / "model"


def run_dpo(build: StageContext) -> dict[str, Any]:
    from funaudiochat.base.atomic import atomic_write_text

    from ..data import read_sharegpt
    from ..llm.preference import read_preferences

    start = build.require("core_cocktail", "dpo") / "run" / "model"
    processor = build.require("text_tokenizer", "dpo")
    conversations_file = build.require("conversations", "dpo") / "train.jsonl"
    conversations = read_sharegpt(conversations_file)
    settings, out = build.settings, build.folder("dpo")
    rows = preference_rows(conversations, settings.dpo_pairs, settings.seed)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out / "preferences.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    )
    read_preferences(out / "preferences.jsonl", check_audio=False)  # the file is valid as written
    overrides = [
        f"model.model={start}",
        f"data.train={out / 'preferences.jsonl'}",
        *spoken_data(processor, settings),
        f"model.lr={settings.dpo_lr}",
        f"trainer.max_steps={settings.dpo_steps}",
        f"seed={settings.seed}",
    ]
    fit_recipe(
        "dpo", out / "run", overrides, product=out / "run" / "model", precision=build.settings.llm_precision
    )
    model = out / "run" / "model"
    if settings.speech_polish_steps > 0:
        model = polish_speech(build, model, conversations_file, processor, out / "polish")
    return {
        "pairs": dict(Counter(r["kind"] for r in rows)),
        "steps": settings.dpo_steps,
        "speech_polish_steps": settings.speech_polish_steps,
        "model": str(model),
    }
