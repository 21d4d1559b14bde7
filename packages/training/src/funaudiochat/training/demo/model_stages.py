"""The speech-model stages of the demo recipe: the model's shape (``demo_model_spec``) and its training."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from funaudiochat.base.constants import GROUP_SIZE

from .context import StageContext, fit_recipe, llm_fit, spoken_data
from .head_shape import DEMO_SRH, demo_srh

# the demo model's audio encoders (to the LLM's width; the SRH: head_shape.py)
DEMO_AUDIO = {"d_model": 128, "encoder_layers": 3, "encoder_attention_heads": 4, "encoder_ffn_dim": 512}


def demo_audio(width: int = DEMO_AUDIO["d_model"]) -> dict[str, int]:
    """``DEMO_AUDIO`` at another width (``d_model``; the feed-forward 4x as wide, as there)."""
    if width < 8 or width % DEMO_AUDIO["encoder_attention_heads"]:
        heads = DEMO_AUDIO["encoder_attention_heads"]
        raise ValueError(f"audio_encoder_width must be >= 8 and a multiple of {heads} heads, got {width}")
    return {**DEMO_AUDIO, "d_model": width, "encoder_ffn_dim": 4 * width}


TEXT_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "rope_theta",
    "max_position_embeddings",
    "rms_norm_eps",
    "tie_word_embeddings",
)


def demo_model_spec(
    text_lm_folder: Path,
    processor_folder: Path,
    seed: int,
    audio_encoder: Path | None = None,
    speech_embedding_std: float | None = None,
    srh_text_scale: float = 1.0,
    audio_width: int = DEMO_AUDIO["d_model"],
    group_size: int = GROUP_SIZE,
    srh_width: int = DEMO_SRH["hidden_size"],
    srh_layers: int = DEMO_SRH["num_hidden_layers"],
) -> dict[str, Any]:
    """The ``model`` argument of the speech stages (``llm.module.build_model``): a Fun-Audio-Chat model
    whose LLM has the text LLM's sizes and special ids and starts from its weights (``llm_from``), with
    ``DEMO_AUDIO`` encoders projecting to the LLM's width (the continuous tower from ``audio_encoder``,
    the ``audio_encoder`` stage's export, when given), the ``demo_srh`` head reading ``h + srh_text_scale *
    E_text`` and, when given, the speech-token table drawn at ``speech_embedding_std``. ``audio_width``:
    the encoders' ``d_model`` (``demo_audio``; the tower's export must have been trained at it);
    ``group_size``: 25 Hz frames per LLM slot (the tower's export must have been trained at it too);
    ``srh_width`` / ``srh_layers``: the head's decoder size (``demo_srh``)."""
    from funaudiochat.drsr.processing import FunAudioChatProcessor

    llm = json.loads((text_lm_folder / "config.json").read_text())
    ids = FunAudioChatProcessor.from_pretrained(processor_folder).token_ids
    text = {name: llm[name] for name in TEXT_FIELDS if name in llm}
    text.update(
        audio_bos_index=ids.audio_bos_index,
        audio_eos_index=ids.audio_eos_index,
        sil_index=ids.sil_index,
        bos_token_id=None,
        eos_token_id=ids.im_end,
        pad_token_id=ids.pad,
    )
    config = {
        "preset": "tiny",
        "vocab_size": llm["vocab_size"],
        "audio_token_index": ids.audio_token_index,
        "text_overrides": text,
        "output_dim": llm["hidden_size"],
        "group_size": group_size,
        **demo_audio(audio_width),
        "crq_transformer_config": demo_srh(srh_width, srh_layers),
        # decode as trained: with the official BOS prefill the head free-runs off its words far sooner
        # (docs/experiments/demo_model/README.md, tools/experiments/srh_free_run.py)
        "srh_prompt_token": "pad",
        "srh_text_scale": srh_text_scale,
    }
    spec = {"config": config, "llm_from": str(text_lm_folder), "seed": seed}
    if audio_encoder is not None:
        spec["audio_encoder_from"] = str(audio_encoder)
    if speech_embedding_std is not None:
        spec["speech_embedding_std"] = speech_embedding_std
    return spec


def audio_encoder_shape(llm_width: int, audio_width: int = DEMO_AUDIO["d_model"]) -> dict[str, Any]:
    """The continuous tower's ``AudioEncoderConfig`` fields in the demo model (``demo_audio(audio_width)``,
    projecting to the text LLM's width ``llm_width``)."""
    return {"num_mel_bins": 128, **demo_audio(audio_width), "output_dim": llm_width}


def tower_fit_overrides(train: Path, steps: int, weights: Path, tokens: str, settings) -> list[str]:
    """The ``audio_encoder`` recipe's overrides both tower stages share: the utterance manifest ``train``,
    ``steps``, the export ``weights``, what the 5 Hz token CTC reads (``tokens``: ``model.text_lm=<folder>``
    or ``model.text_tokenizer=<folder>``), the tower's shape, the group size its token CTC and embedding
    match pool by and the seed."""
    from .text_stages import text_lm_width

    shape = audio_encoder_shape(text_lm_width(settings.text_lm_size), settings.audio_encoder_width)
    return [
        f"data.train={train}",
        f"trainer.max_steps={steps}",
        f"model.export_path={weights}",
        tokens,
        f"model.group_size={settings.group_size}",
        # speed perturbation changes tempo and pitch: more voices than the 14 training ones, for the
        # held-out voices the tower must understand
        "data.speed_perturb=[0.9,1.0,1.1]",
        # decoding and resampling each file to 16 kHz was a fifth of a step (2.3 GB of audio kept)
        "data.cache_audio=true",
        f"seed={settings.seed}",
        *(f"model.encoder.{key}={value}" for key, value in shape.items()),
    ]


def question_voices(settings) -> tuple[str, ...]:
    """The voices the listening path's extra speech is drawn from: the training voices and the first
    ``listening_voices`` of ``speech_stages.LISTENING_VOICES``."""
    from .speech_stages import LISTENING_VOICES, TRAIN_VOICES

    more = settings.listening_voices
    if not 0 <= more <= len(LISTENING_VOICES):
        raise ValueError(f"listening_voices must be 0 to {len(LISTENING_VOICES)}, got {more}")
    return TRAIN_VOICES + LISTENING_VOICES[:more]


def spliced_utterances(build: StageContext, corpus: Path) -> list[dict[str, str]]:
    """The ``audio_encoder`` stage's spliced sentences (``audio_encoder_spliced`` of them, spoken into
    ``audio_encoder/spliced`` in ``question_voices``; spoken again, the same, when that stage was restored
    without them) as manifest lines ``{"audio", "text"}``, spliced from the training pairs of the
    ``corpus`` folder, each with three of the ``audio_encoder_words`` most common English words when
    that is > 0."""
    from .speech_stages import QUESTION_SPEEDS
    from .spliced_speech import speak_spliced

    settings = build.settings
    if settings.audio_encoder_spliced == 0:
        return []
    train = [corpus / "pairs_train.jsonl", corpus / "tools_train.jsonl"]
    out = build.folder("audio_encoder") / "spliced"
    n = settings.audio_encoder_spliced
    voices = question_voices(settings)
    return speak_spliced(train, out, n, voices, QUESTION_SPEEDS, settings.seed, settings.audio_encoder_words)


def voice_questions(build: StageContext, corpus: Path) -> list[dict[str, str]]:
    """The training questions of the ``corpus`` folder (every task's; the first ``pairs_per_file`` of each
    when that is set) spoken ``listening_voice_rounds`` times each in voices drawn from
    ``LISTENING_VOICES[:listening_voices]`` (none when that is 0), into ``audio_encoder/voices`` (spoken
    again, the same, when that stage was restored without them): manifest lines ``{"audio", "text",
    "answer", "task"}``, ``answer`` the corpus answer. The tower hears them all; the listening fit
    answers the question-answering ones."""
    from .family import TASKS
    from .speech_stages import QUESTION_SPEEDS, TRAIN_VOICES
    from .spliced_speech import speak_sentences
    from .text_stages import corpus_pairs

    settings = build.settings
    voices = question_voices(settings)[len(TRAIN_VOICES) :]
    if not voices:
        return []
    records = corpus_pairs(corpus, ("train",), TASKS)
    limit = settings.pairs_per_file
    if limit is not None:  # a small build (tests): the first that many of each task
        by_task = {task: [r for r in records if r["task"] == task][:limit] for task in TASKS}
        records = [record for task in TASKS for record in by_task[task]]
    records = records * settings.listening_voice_rounds
    questions = [record["question"] for record in records]
    out = build.folder("audio_encoder") / "voices"
    spoken = speak_sentences(questions, out, voices, QUESTION_SPEEDS, settings.seed + 2, "voice")
    return [
        {**line, "answer": record["answer"], "task": record["task"]}
        for line, record in zip(spoken, records, strict=True)
    ]


def answered_in_text(questions: Sequence[dict[str, str]]) -> list:
    """The S2T training conversations (``speech_stages.text_answered``) of the question-answering
    ``questions`` (``voice_questions`` lines), each answered with its corpus answer."""
    from .speech_stages import text_answered
    from .text_stages import QA_TASKS

    return [text_answered(q["audio"], q["text"], q["answer"]) for q in questions if q["task"] in QA_TASKS]


def run_audio_encoder(build: StageContext) -> dict[str, Any]:
    from .speech_stages import write_utterances

    speech = build.require("speech", "audio_encoder")
    settings = build.settings
    if settings.tower_token_table == "text_lm":
        tokens = f"model.text_lm={build.require('text_lm', 'audio_encoder') / 'model'}"
    else:  # a table of its own: the tower trains beside the text LLM
        tokens = f"model.text_tokenizer={build.require('text_tokenizer', 'audio_encoder')}"
    out = build.folder("audio_encoder")
    corpus = build.require("corpus", "audio_encoder")
    spliced = spliced_utterances(build, corpus)
    voiced = voice_questions(build, corpus)
    count = write_utterances(speech, out / "utterances.jsonl", extra=spliced + voiced)
    weights = out / "audio_encoder.safetensors"
    overrides = tower_fit_overrides(
        out / "utterances.jsonl", settings.audio_encoder_steps, weights, tokens, settings
    )
    fit_recipe(
        "audio_encoder", out / "run", overrides, product=weights, precision=build.settings.tower_precision
    )
    return {
        "utterances": count,
        "spliced": len(spliced),
        "voice_questions": len(voiced),
        "steps": settings.audio_encoder_steps,
        "weights": str(weights),
    }


def run_tower_match(build: StageContext) -> dict[str, Any]:
    """The tower of ``audio_encoder`` fine-tuned with the embedding match (``llm.audio_encoder``): its 5 Hz
    groups pulled onto the text LLM's embeddings of the words they hold, which the frozen LLM reads far
    better than the token CTC's long vectors. With ``tower_match_steps`` = 0 the tower is copied as is."""
    import shutil

    tower = build.require("audio_encoder", "tower_match")
    text_lm = build.require("text_lm", "tower_match") / "model"
    out = build.folder("tower_match")
    out.mkdir(parents=True, exist_ok=True)
    settings = build.settings
    weights = out / "audio_encoder.safetensors"
    if settings.tower_match_steps == 0:
        if not weights.exists():
            from funaudiochat.base.atomic import atomic_path

            with atomic_path(weights) as tmp:
                shutil.copyfile(tower / "audio_encoder.safetensors", tmp)
        return {"steps": 0, "weights": str(weights)}
    overrides = [
        *tower_fit_overrides(
            tower / "utterances.jsonl",
            settings.tower_match_steps,
            weights,
            f"model.text_lm={text_lm}",
            settings,
        ),
        f"model.init_weights={tower / 'audio_encoder.safetensors'}",
        f"model.embed_weight={settings.tower_match_weight}",
        f"model.token_logit_scale={settings.tower_match_logit_scale}",
        f"model.lr={settings.tower_match_lr}",
    ]
    fit_recipe(
        "audio_encoder", out / "run", overrides, product=weights, precision=build.settings.tower_precision
    )
    return {"steps": settings.tower_match_steps, "weights": str(weights)}


# pre-alignment's frozen modules: the LLM and the listening path (tower, continuous adapter)
LISTENING_FROZEN_MODULES = (
    "language_model",
    "continuous_audio_tower",
    "audio_tower.continual_output_matching",
)
LISTENING_FROZEN = "[" + ",".join(LISTENING_FROZEN_MODULES) + "]"  # as a recipe override
# the listening fit before it: the LLM and the speech output (SRH) frozen, the tower and adapter learn
LISTENING_LEARNS = "[language_model,audio_invert_tower]"


def write_spoken_replies(conversations: Path, out: Path) -> int:
    """Write the conversations of the sharegpt file ``conversations`` whose assistant speaks (has speech
    codes) to ``out`` (atomically); returns how many. Raises ValueError when there are none."""
    from ..data import read_sharegpt, write_sharegpt

    spoken = [c for c in read_sharegpt(conversations, check_audio=False) if c.assistant_speech]
    if not spoken:
        raise ValueError(f"{conversations}: no conversation has a spoken reply")
    write_sharegpt(out, spoken)
    return len(spoken)


def plain_reply(text: str) -> str:
    """A spoken reply's text without the ``<|sil|>`` of the word-aligned layout (``reply_alignment``)."""
    from .reply_alignment import SIL

    return " ".join(text.replace(SIL, " ").split())


def write_listening_rows(
    conversations: Path,
    out: Path,
    transcripts: bool = False,
    sentences: Sequence[dict[str, str]] = (),
    questions: Sequence[dict[str, str]] = (),
) -> int:
    """Write the spoken questions of the sharegpt file ``conversations`` answered in text as the text LLM
    was taught (``DEFAULT_S2T_PROMPT``, the question's audio alone, a text reply) to ``out`` (atomically);
    returns how many. A question answered in speech (``DEFAULT_S2M_PROMPT``) is taken too, its reply's
    text as the answer (without the ``<|sil|>`` of a word-aligned reply: the text LLM writes its answers
    whole): the same questions in other voices and noise, which the listening path must hear alike. Each
    question audio is taken once per reply kind. Tool calls are left out.

    Args:
        conversations: the recipe's training conversations (sharegpt JSONL).
        out: the rows' file.
        transcripts: also the transcription rows (audio + ``ASR_INSTRUCTION`` -> the words), which a text
            LLM that learnt to copy under that instruction (``text_lm_skills``) writes from the words it
            reads: a target that is the audio's own content, whatever the phrasing.
        sentences: more audio to transcribe, manifest lines ``{"audio": wav path, "text": its words}``
            (the tower's spliced sentences: training words in new orders).
        questions: more spoken questions to answer, lines ``{"audio", "text": the question, "answer",
            "task"}`` (``voice_questions``: the training questions in more voices); only those of the
            question-answering tasks are taken."""
    from funaudiochat.drsr.prompts import ASR_INSTRUCTION, DEFAULT_S2M_PROMPT, DEFAULT_S2T_PROMPT

    from ..data import read_sharegpt, write_sharegpt
    from ..data.records import AUDIO_TEMPLATE, Conversation, Turn
    from .speech_stages import spoken_question

    rows, heard = [], set()
    for c in read_sharegpt(conversations, check_audio=False):
        if len(c.turns) != 2 or c.turns[0].role != "user" or len(c.user_audios) != 1:
            continue
        question, asked = c.user_audios[0], c.turns[0].content
        if asked == AUDIO_TEMPLATE and c.system == DEFAULT_S2T_PROMPT and not c.assistant_speech:
            row, kind = c, "answer"
        elif asked == AUDIO_TEMPLATE and c.system == DEFAULT_S2M_PROMPT and len(c.assistant_speech) == 1:
            answer = Turn("assistant", plain_reply(c.assistant_speech[0].text))
            row = Conversation([c.turns[0], answer], [question], DEFAULT_S2T_PROMPT, dict(c.extra))
            kind = "answer"
        elif transcripts and asked == AUDIO_TEMPLATE + ASR_INSTRUCTION and not c.assistant_speech:
            row, kind = c, "transcript"
        else:
            continue
        if (question.path, kind) not in heard:
            heard.add((question.path, kind))
            rows.append(row)
    if not rows:
        raise ValueError(f"{conversations}: no spoken question is answered in text")
    for sentence in sentences:
        turns = [Turn("user", AUDIO_TEMPLATE + ASR_INSTRUCTION), Turn("assistant", sentence["text"])]
        audio = spoken_question(sentence["audio"], sentence["text"])
        rows.append(Conversation(turns, [audio], DEFAULT_S2T_PROMPT))
    rows += answered_in_text(questions)
    write_sharegpt(out, rows)
    return len(rows)


def speaking_fit(
    build: StageContext,
    start: dict,
    conversations: Path,
    processor: Path,
    spoken: Path,
    run: Path,
    steps: int,
    lr: float,
) -> int:
    """Pre-alignment's speaking fit: the speech output (SRH, speech grouping) of the model ``start`` (a
    recipe section, ``{"model": {"model": ...}}``) learns ``steps`` steps at peak ``lr`` on the spoken
    replies of the sharegpt file ``conversations`` (written to ``spoken``; ``processor``: the text
    tokenizer's folder), the LLM and the listening path frozen, in ``run`` (exported to ``run/model``).
    Returns how many spoken replies it trained on."""
    # with the LLM and the listening path frozen only spoken replies train anything (the SRH and the
    # speech grouping): the text-only replies would be half of every batch's compute for nothing
    rows = write_spoken_replies(conversations, spoken)
    overrides = [
        f"data.train={spoken}",
        *spoken_data(processor, build.settings),
        f"trainer.max_steps={steps}",
        f"model.lr={lr}",
        "model.warmup_steps=50",
        # the listening path stays as it is (its groups are the LLM's input embeddings): the frozen LLM
        # cannot yet write the answers of S2S rows, whose loss would only pull the groups away from what
        # it reads; here the speech output (SRH, speech grouping) learns
        f"model.freeze={LISTENING_FROZEN}",
        f"seed={build.settings.seed}",
    ]
    fit_recipe("pre_alignment", run, overrides, start, product=run / "model", **llm_fit(build.settings))
    return rows


def run_pre_alignment(build: StageContext) -> dict[str, Any]:
    text_lm = build.require("text_lm_copy", "pre_alignment") / "model"
    corpus = build.require("corpus", "pre_alignment")
    processor = build.require("text_tokenizer", "pre_alignment")
    conversations = build.require("conversations", "pre_alignment")
    audio_encoder = build.require("tower_match", "pre_alignment") / "audio_encoder.safetensors"
    out = build.folder("pre_alignment")
    out.mkdir(parents=True, exist_ok=True)
    settings = build.settings
    spec = demo_model_spec(
        text_lm,
        processor,
        settings.seed,
        audio_encoder,
        settings.speech_embedding_std,
        settings.srh_text_scale,
        settings.audio_encoder_width,
        settings.group_size,
        settings.srh_width,
        settings.srh_layers,
    )
    record: dict[str, Any] = {}
    start: dict[str, Any] = {"model": {"model": spec}}
    run = out / "run"
    if settings.listening_steps > 0 and not (run / "model").exists():  # (exists: both fits are done)
        # the listening path (tower, continuous adapter) learns to say the question so that the frozen
        # text LLM answers it as it answers the question written (the official pre-alignment trains the
        # encoder and adapter with the LLM frozen)
        transcripts = settings.listening_transcripts
        sentences = spliced_utterances(build, corpus) if transcripts else []
        voiced = voice_questions(build, corpus)
        rows = write_listening_rows(
            conversations / "train.jsonl", out / "listening_rows.jsonl", transcripts, sentences, voiced
        )
        listen = out / "listen"
        overrides = [
            f"data.train={out / 'listening_rows.jsonl'}",
            *spoken_data(processor, settings),
            f"trainer.max_steps={settings.listening_steps}",
            f"model.lr={settings.listening_lr}",
            "model.warmup_steps=50",
            f"model.freeze={LISTENING_LEARNS}",
            f"seed={settings.seed}",
        ]
        fit_recipe(
            "pre_alignment",
            listen,
            overrides,
            start,
            product=listen / "model",
            **llm_fit(build.settings),
        )
        record["listening"] = {
            "steps": settings.listening_steps,
            "rows": rows,
            "model": str(listen / "model"),
        }
        start = {"model": {"model": str(listen / "model")}}
    rows = speaking_fit(
        build,
        start,
        conversations / "train.jsonl",
        processor,
        out / "spoken_replies.jsonl",
        run,
        settings.pre_alignment_steps,
        settings.pre_alignment_lr,
    )
    return {
        **record,
        "steps": settings.pre_alignment_steps,
        "spoken_replies": rows,
        "model": str(run / "model"),
    }
