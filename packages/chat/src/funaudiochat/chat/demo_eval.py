"""The demo model's evaluation on held-out speech: questions in phrasings and voices training never used.

    python tools/eval_spoken_qa.py --model runs/demo/package --run runs/demo [--limit 40] [--out eval.json]

Every held-out pair of the run (``speech/heldout``: the held-out phrasings and contents, spoken in
``EVAL_VOICES``) is asked as the pipeline is used:

- **S2T**: the question's audio in ``s2t`` mode; right when the text holds the pair's key
  (``corpus.contains_key``);
- **S2S**: the audio in ``s2s`` mode; the spoken answer is transcribed by an independent recogniser
  (``listen.Recognizer``: pocketsphinx's own English model, its vocabulary closed to the corpus' answer
  words) and right when the transcript holds the key; the text of the same reply is scored too
  (``s2s_text``);
- **ASR**: the transcription requests' audio in ``asr`` mode; word error rate against the spoken sentence
  (``torchaudio.functional.edit_distance`` over lower-case words);
- **tools**: the tool requests' audio in ``s2t`` mode with ``TOOLS``; right when the one parsed call
  equals the expected call (name and arguments);
- **vocoder round trip**: the reference answers' speech codes (the speech tokenizer's, as training saw
  them) through the pipeline's vocoder, heard by the same recogniser: the ceiling of S2S that the vocoder
  sets; and the recogniser on the reference answer audio itself (espeak-ng): its own ceiling;
- **text**: the held-out phrasings as text, to the final model (``s2t`` mode) and to the base text LLM
  the speech model started from (``text_lm_copy/model``, or ``text_lm/model`` in runs made before that
  stage): the knowledge kept;
- **timing**: a few S2S replies streamed one at a time: time to first audio and the real-time factor.

Accuracies are reported overall and per task, split and phrasing, with a standard error clustered by
phrasing (the table's ``±``). ``limit`` takes that many pairs of each task, in turn from each of its
phrasings (``spread_by_phrasing``), for quick runs.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from funaudiochat.base.constants import VOCODER_SAMPLE_RATE
from funaudiochat.training.demo.corpus import SPLITS, contains_key, words_of
from funaudiochat.training.demo.family import TASKS
from funaudiochat.training.demo.text_stages import QA_TASKS, corpus_pairs

BATCH = 8  # requests decoded together


@dataclass(frozen=True)
class HeldOutItem:
    """One held-out pair: its corpus record's fields and the question's audio file."""

    id: str
    task: str
    split: str
    audio: str
    question: str
    answer: str
    key: tuple[str, ...]
    tool_call: dict | None = field(default=None, hash=False)
    answer_codes: tuple[int, ...] = field(default=(), hash=False)
    answer_audio: str = ""
    phrasing: str = ""


def heldout_items(run: Path, limit: int | None = None, group: str = "heldout") -> list[HeldOutItem]:
    """The spoken held-out pairs of a demo run folder (``limit``: at most this many per task, taken evenly
    from its phrasings: ``spread_by_phrasing``); ``group`` another speech group instead (``"train_a"``:
    the training pairs in training voices)."""
    from funaudiochat.training.data import read_manifest

    records = {r["id"]: r for r in corpus_pairs(run / "corpus", SPLITS, TASKS)}
    # the speech_tokenizer stage's copy: its answer codes are the trained tokenizer's (the speech stage's
    # own manifest predates that tokenizer)
    items = []
    for entry in read_manifest(run / "speech_tokenizer" / "data" / group / "manifest.jsonl"):
        record = records[entry.id]
        items.append(
            HeldOutItem(
                entry.id,
                record["task"],
                record["split"],
                str(entry.audio),
                record["question"],
                record["answer"],
                tuple(record["key"]),
                record["tool_call"],
                tuple(int(c) for c in entry.answer_codes) if entry.answer_codes is not None else (),
                str(entry.answer_audio),
                record["phrasing"],
            )
        )
    return items if limit is None else spread_by_phrasing(items, limit)


def spread_by_phrasing(items: Sequence[HeldOutItem], limit: int, seed: int = 0) -> list[HeldOutItem]:
    """At most ``limit`` items per task, taken in turn from each of its phrasings (each phrasing's items
    in a seeded shuffle), in ``items``' order. Held-out accuracy is won or lost per phrasing (a small LLM
    either reads a new phrasing or not), so the first pairs of the manifest, all of one or two phrasings,
    would measure only those."""
    import random

    by_task: dict[str, dict[str, list[int]]] = {}
    for index, item in enumerate(items):
        by_task.setdefault(item.task, {}).setdefault(item.phrasing, []).append(index)
    chosen: set[int] = set()
    for task, phrasings in by_task.items():
        queues = []
        for phrasing, indices in sorted(phrasings.items()):
            random.Random(f"{seed}:{task}:{phrasing}").shuffle(indices)
            queues.append(indices)
        taken = 0
        while taken < limit and any(queues):
            for queue in queues:
                if queue and taken < limit:
                    chosen.add(queue.pop(0))
                    taken += 1
    return [item for index, item in enumerate(items) if index in chosen]


def word_error_rate(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Word edits over reference words, summed over the pairs (lower case, punctuation dropped)."""
    from torchaudio.functional import edit_distance

    edits = sum(edit_distance(words_of(r), words_of(h)) for h, r in zip(hypotheses, references, strict=True))
    return edits / max(1, sum(len(words_of(r)) for r in references))


def _score(items: Sequence[HeldOutItem], right: Sequence[bool]) -> dict[str, Any]:
    """Accuracy overall, per task, per split and per phrasing, with its standard error over phrasings
    (``se_by_phrasing``, clustered: pairs of one phrasing are right or wrong together, so the pairs are
    not independent samples and ``n`` alone overstates the precision)."""

    def share(selected: list[bool]) -> float:
        return sum(selected) / len(selected) if selected else float("nan")

    per_task, per_split, per_phrasing = {}, {}, {}
    for item, ok in zip(items, right, strict=True):
        per_task.setdefault(item.task, []).append(ok)
        per_split.setdefault(item.split, []).append(ok)
        per_phrasing.setdefault(f"{item.task}:{item.phrasing}", []).append(ok)
    return {
        "accuracy": share(list(right)),
        "n": len(right),
        "phrasings": len(per_phrasing),
        "se_by_phrasing": clustered_standard_error(list(per_phrasing.values())),
        "per_task": {k: share(v) for k, v in sorted(per_task.items())},
        "per_split": {k: share(v) for k, v in sorted(per_split.items())},
        "per_phrasing": {k: share(v) for k, v in sorted(per_phrasing.items())},
    }


def clustered_standard_error(clusters: Sequence[Sequence[bool]]) -> float:
    """Standard error of the share of right answers over all pairs, the pairs grouped in ``clusters``
    (the cluster-robust sandwich estimator with the G / (G - 1) correction; NaN under two clusters)."""
    n = sum(len(c) for c in clusters)
    if len(clusters) < 2 or n == 0:
        return float("nan")
    mean = sum(sum(c) for c in clusters) / n
    spread = sum((sum(c) - mean * len(c)) ** 2 for c in clusters)
    g = len(clusters)
    return (g / (g - 1) * spread) ** 0.5 / n


def key_score(items: Sequence[HeldOutItem], texts: Sequence[str]) -> dict[str, Any]:
    """``_score`` of ``items`` where item i is right when ``texts[i]`` holds its key."""
    return _score(items, [contains_key(t, i.key) for t, i in zip(texts, items, strict=True)])


def exact_call(calls: Sequence, expected: dict) -> bool:
    """Whether ``calls`` (``ToolCall``s) is one call of ``expected["name"]`` with its ``"arguments"``."""
    if len(calls) != 1:
        return False
    return calls[0].name == expected["name"] and calls[0].arguments == expected["arguments"]


def replies_of(pipe, requests: list, progress: Callable[[int], None] = lambda n: None) -> list:
    """``pipe.chat`` of ``requests`` in batches of ``BATCH``, calling ``progress(batch size)`` after each."""
    replies = []
    for start in range(0, len(requests), BATCH):
        replies += pipe.chat(requests[start : start + BATCH])
        progress(len(requests[start : start + BATCH]))
    return replies


def bundled_recognizer():
    """The independent recogniser the bundled answers are heard with: ``listen.Recognizer`` over the
    corpus's spoken answers."""
    from funaudiochat.training.demo.corpus import build_corpus
    from funaudiochat.training.demo.listen import Recognizer

    return Recognizer(sorted({p.answer for p in build_corpus(0) if p.task not in ("tool", "asr")}))


def bundled_replies(
    pipe, questions: Path, seed: int = 0, recognizer=None
) -> tuple[list[dict], list, list[str]]:
    """The bundled spoken questions (``questions/questions.jsonl``: ``audio``, ``question``, ``key`` per
    line) asked as the README's main job asks them (S2S, speech seed ``seed``; the job's is 0): the items,
    the replies and what the independent recogniser (``recognizer``; None: ``bundled_recognizer()``)
    hears in each."""
    from funaudiochat.chat import Request, Sampling

    lines = (Path(questions) / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    items = [json.loads(line) for line in lines if line]
    requests = [
        Request(audio=Path(questions) / i["audio"], mode="s2s", sampling=Sampling(seed=seed)) for i in items
    ]
    replies = pipe.chat(requests)
    recognizer = recognizer or bundled_recognizer()
    return items, replies, [recognizer.transcribe(r.audio, r.sample_rate) for r in replies]


def evaluate(
    pipe,
    items: Sequence[HeldOutItem],
    tools: list[dict],
    recognizer=None,
    base_lm: Path | None = None,
    timing_items: int = 5,
    progress: Callable[[int], None] = lambda n: None,
    sampling=None,
) -> dict[str, Any]:
    """Every metric of the module docstring for ``pipe`` on ``items``; ``recognizer``: a
    ``listen.Recognizer`` (None: no S2S transcripts); ``base_lm``: the text LLM's folder (None: no base
    text accuracy); ``sampling``: every request's ``Sampling`` (None: the defaults, the official speech
    sampling)."""
    from funaudiochat.chat import Request, Sampling

    sampling = sampling or Sampling()
    qa = [i for i in items if i.task in QA_TASKS]
    asr = [i for i in items if i.task == "asr"]
    calls = [i for i in items if i.task == "tool"]
    results: dict[str, Any] = {"pairs": len(items)}

    s2t = replies_of(pipe, [Request(audio=i.audio, mode="s2t", sampling=sampling) for i in qa], progress)
    results["s2t"] = key_score(qa, [r.text for r in s2t])
    s2s = replies_of(pipe, [Request(audio=i.audio, mode="s2s", sampling=sampling) for i in qa], progress)
    results["s2s_text"] = key_score(qa, [r.text for r in s2s])
    if recognizer is not None:
        heard = [recognizer.transcribe(r.audio, r.sample_rate) if r.audio is not None else "" for r in s2s]
        results["s2s"] = key_score(qa, heard)
        results["s2s_examples"] = [
            {"id": i.id, "text": r.text, "heard": h}
            for i, r, h in list(zip(qa, s2s, heard, strict=True))[:10]
        ]

    transcripts = replies_of(
        pipe, [Request(audio=i.audio, mode="asr", sampling=sampling) for i in asr], progress
    )
    results["asr_wer"] = word_error_rate([r.text for r in transcripts], [i.answer for i in asr])
    results["asr_n"] = len(asr)

    called = replies_of(
        pipe, [Request(audio=i.audio, mode="s2t", tools=tools, sampling=sampling) for i in calls], progress
    )
    exact = [exact_call(r.tool_calls, i.tool_call) for r, i in zip(called, calls, strict=True)]
    results["tools"] = _score(calls, exact)

    if recognizer is not None:
        results.update(speech_ceilings(pipe, qa, recognizer))

    results.update(text_knowledge(pipe, qa, base_lm, sampling, progress))
    results["timing"] = streamed_timing(pipe, qa[:timing_items], sampling)
    return results


def base_text_lm(run: Path) -> Path:
    """The text LLM a demo run's speech model started from: ``text_lm_copy``'s, else ``text_lm``'s."""
    copied = Path(run) / "text_lm_copy" / "model"
    return copied if copied.is_dir() else Path(run) / "text_lm" / "model"


def text_knowledge(
    pipe,
    items: Sequence[HeldOutItem],
    base_lm: Path | None = None,
    sampling=None,
    progress: Callable[[int], None] = lambda n: None,
) -> dict[str, Any]:
    """The text knowledge kept: ``"text_final"``, ``pipe``'s text replies to the written questions of the
    held-out phrasings among ``items``, and ``"text_base"``, the greedy replies of the text LLM
    ``base_lm`` (None: left out), each scored as ``key_score``; ``sampling``: the requests' (None: the
    defaults)."""
    from funaudiochat.chat import Request, Sampling

    sampling = sampling or Sampling()
    phrasings = [i for i in items if i.task in QA_TASKS and i.split == "heldout_phrasing"]
    texts = replies_of(
        pipe, [Request(text=i.question, mode="s2t", sampling=sampling) for i in phrasings], progress
    )
    results = {"text_final": key_score(phrasings, [r.text for r in texts])}
    if base_lm is not None:
        from funaudiochat.training.demo.text_stages import greedy_replies
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(base_lm).eval()
        tokenizer = AutoTokenizer.from_pretrained(base_lm)
        answers = greedy_replies(model, tokenizer, [i.question for i in phrasings])
        results["text_base"] = key_score(phrasings, answers)
    return results


def speech_ceilings(pipe, items: Sequence[HeldOutItem], recognizer) -> dict[str, Any]:
    """``vocoder_round_trip``: the recogniser hears the key in the vocoder's rendering of each reference
    answer's codes (items without codes are left out); ``reference_speech``: in the reference answer audio."""
    import soundfile
    import torch
    from funaudiochat.chat.voices import resolve_voice

    out: dict[str, Any] = {}
    coded = [i for i in items if i.answer_codes]
    if coded:
        speaker = resolve_voice(None, pipe.vocoder.speakers, pipe.speech_tokenizer)
        heard = []
        for item in coded:
            audio = pipe.vocoder.synthesize(
                torch.tensor(item.answer_codes), speaker, chunk_tokens=pipe.hop_tokens
            )
            heard.append(recognizer.transcribe(audio, VOCODER_SAMPLE_RATE))
        out["vocoder_round_trip"] = key_score(coded, heard)
    spoken = [i for i in items if i.answer_audio]
    if spoken:
        heard = []
        for item in spoken:
            audio, rate = soundfile.read(item.answer_audio, dtype="float32", always_2d=True)
            heard.append(recognizer.transcribe(torch.from_numpy(audio.mean(1)), rate))
        out["reference_speech"] = key_score(spoken, heard)
    return out


def streamed_timing(pipe, items: Sequence[HeldOutItem], sampling) -> dict[str, Any]:
    """Median time to first audio, total time, audio seconds and real-time factor of S2S replies streamed
    one at a time (``Pipeline.stream``; the threads torch has)."""
    import torch
    from funaudiochat.chat import Request

    first, totals, rtfs, audio_s = [], [], [], []
    for item in items:
        start = time.perf_counter()
        done = None
        for event in pipe.stream(Request(audio=item.audio, mode="s2s", sampling=sampling)):
            done = event
        reply = done.reply
        if reply.timings.first_audio_s is None:
            continue
        first.append(reply.timings.first_audio_s)
        totals.append(time.perf_counter() - start)
        audio_s.append(reply.timings.audio_s)
        rtfs.append(reply.timings.rtf)
    if not first:
        return {"replies": 0}
    return {
        "replies": len(first),
        "threads": torch.get_num_threads(),
        "first_audio_s": statistics.median(first),
        "total_s": statistics.median(totals),
        "audio_s": statistics.median(audio_s),
        "rtf": statistics.median(rtfs),
    }


def table(results: dict[str, Any]) -> str:
    """The headline figures as a Markdown table (the model card's and the issue's); ``text_plain_ft``, when
    there, is the text accuracy of the same recipe with plain fine-tuning instead of Core-Cocktail."""

    def pct(name: str) -> str:
        if name not in results:
            return "-"
        score = results[name]
        se = score.get("se_by_phrasing")
        if se is None or se != se:  # older results, or one phrasing: no spread over phrasings
            return f"{100 * score['accuracy']:.1f} % (n={score['n']})"
        spread = f"n={score['n']}, {score['phrasings']} phrasings"
        return f"{100 * score['accuracy']:.1f} ± {100 * se:.1f} % ({spread})"

    timing = results.get("timing", {})
    rows = [
        ("S2T answer accuracy", pct("s2t"), ">= 90 %"),
        ("S2S answer accuracy (pocketsphinx hears the key)", pct("s2s"), ">= 80 %"),
        ("S2S text accuracy", pct("s2s_text"), ""),
        ("vocoder round trip: reference codes -> speech, key heard", pct("vocoder_round_trip"), ""),
        ("reference answer audio (espeak-ng), key heard", pct("reference_speech"), ""),
        ("ASR word error rate", f"{100 * results['asr_wer']:.1f} % (n={results['asr_n']})", "<= 10 %"),
        ("tool calls, exact match", pct("tools"), ">= 90 %"),
        ("text accuracy, final model", pct("text_final"), "within 2 points of base"),
        ("text accuracy, base text LLM", pct("text_base"), ""),
        *(
            [("text accuracy, plain fine-tuning instead of Core-Cocktail", pct("text_plain_ft"), "")]
            if "text_plain_ft" in results
            else []
        ),
        ("time to first audio (streamed)", f"{timing.get('first_audio_s', float('nan')):.2f} s", ""),
        ("real-time factor (streamed)", f"{timing.get('rtf', float('nan')):.2f}", "< 1"),
    ]
    lines = ["| metric | demo model | goal |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {goal} |" for name, value, goal in rows]
    return "\n".join(lines) + "\n"


# the Sampling fields the command line sets: (field, type, what it is; the default is Sampling's, official)
SAMPLING_OPTIONS = (
    ("speech_temperature", float, "speech sampling temperature (0: argmax)"),
    ("speech_top_p", float, "speech nucleus"),
    ("speech_top_k", int, "speech top-k (0: off)"),
    ("repetition_penalty", float, "speech repetition penalty"),
    ("sil_scale", float, "the text's <|sil|> probability times this"),
    ("plan_max_silence", int, "planned replies: most LLM steps between words (0: no limit)"),
)


def main(argv: Sequence[str] | None = None) -> int:
    """``eval_spoken_qa --model FOLDER --run RUN [--limit N] [--quantize int8|int4] [--plan-speech on|off]
    [--out FILE] [--card]``: evaluate, print the table, write the JSON (and with ``--card`` put the table
    into the model folder's README.md)."""
    import argparse

    from funaudiochat.base.atomic import atomic_write_text
    from funaudiochat.chat import Pipeline, Sampling
    from funaudiochat.training.demo.listen import Recognizer

    parser = argparse.ArgumentParser(prog="eval_spoken_qa", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="pipeline folder (the package stage's)")
    parser.add_argument(
        "--run", type=Path, required=True, help="the demo run folder (held-out speech, corpus)"
    )
    parser.add_argument("--limit", type=int, default=None, help="at most this many pairs per task")
    parser.add_argument("--out", type=Path, default=None, help="JSON of every figure (default: print only)")
    parser.add_argument("--card", action="store_true", help="write the table into the model's README.md")
    parser.add_argument("--seed", type=int, default=0, help="seed of speech sampling")
    parser.add_argument(
        "--quantize",
        choices=["int8", "int4"],
        help="weight-only LLM and SRH of the model (the base text LM it is compared with stays float)",
    )
    parser.add_argument(
        "--plan-speech",
        choices=["folder", "on", "off"],
        default="folder",
        help="write a spoken reply's text first and say it (Pipeline's plan_speech; default: the folder's)",
    )
    official = Sampling()
    for name, kind, what in SAMPLING_OPTIONS:
        default = getattr(official, name)
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=kind, default=default, help=f"{what} (default {default})")
    args = parser.parse_args(argv)
    try:
        sampling = Sampling(seed=args.seed, **{name: getattr(args, name) for name, _, _ in SAMPLING_OPTIONS})
    except ValueError as error:
        parser.error(str(error))

    plan_speech = {"folder": None, "on": True, "off": False}[args.plan_speech]
    pipe = Pipeline.from_pretrained(args.model, quantize=args.quantize, plan_speech=plan_speech)
    items = heldout_items(args.run, args.limit)
    tools = json.loads((args.run / "corpus" / "tools.json").read_text())
    answers = [pair["answer"] for pair in corpus_pairs(args.run / "corpus", SPLITS, QA_TASKS)]
    recognizer = Recognizer(answers)
    start = time.perf_counter()
    done = [0]
    qa = sum(i.task in QA_TASKS for i in items)
    total = (
        3 * qa + len(items) - qa + sum(i.task in QA_TASKS and i.split == "heldout_phrasing" for i in items)
    )

    def progress(n: int) -> None:
        done[0] += n
        print(f"\r{done[0]}/{total} requests, {time.perf_counter() - start:.0f} s", end="", flush=True)

    base = base_text_lm(args.run)
    results = evaluate(pipe, items, tools, recognizer, base, progress=progress, sampling=sampling)
    results["text_base_model"] = str(base)
    print()
    results["seconds"] = time.perf_counter() - start
    results["model"], results["limit"], results["quantize"] = str(args.model), args.limit, args.quantize
    results["sampling"] = dataclasses.asdict(sampling)
    results["plan_speech"] = pipe.plan_speech
    text = table(results)
    print(text)
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    if args.card:
        card_path = args.model / "README.md"
        card = card_path.read_text(encoding="utf-8")
        head = card.split("## Evaluation", 1)[0]
        command = "python tools/eval_spoken_qa.py --model <this folder> --run runs/demo --card"
        intro = f"Held-out phrasings and contents in voices training never heard (`{command}`):"
        card = f"{head}## Evaluation\n{intro}\n\n{text}"
        atomic_write_text(card_path, card)
    return 0
