"""Spoken Q/A training data from text pairs, spoken with espeak-ng, in the official sharegpt format.

    funaudiochat-synth pairs.jsonl --out data/spoken \\
        --voices en-us,en-gb,en-us+f3 --speeds 140,160,180 --seed 0 [--snr-db 20] \\
        [--tokenizer speech_tokenizer.safetensors] [--format both] [--relative-paths]

Input: a JSONL file of ``{"question": ..., "answer": ..., "id": optional}`` lines, or a TSV file of
``question<TAB>answer`` lines (``#`` comments and blank lines are skipped). Every problem of the file is
reported at once as ``file:line: field: what (allowed)``.

For each pair, the question and the answer are spoken by ``espeak-ng -v VOICE -s SPEED -w out.wav``
(the text goes in on stdin); voice and speed are drawn by a seeded RNG from ``--voices`` / ``--speeds``
(answers use ``--answer-voice`` / ``--answer-speed`` when given). ``--snr-db`` adds white noise at that
signal-to-noise ratio to the questions (and to the answers with ``--noisy-answers``), seeded per pair.
The answer speech is tokenized into 25 Hz codes by the speech tokenizer: the ``--tokenizer`` weights
(safetensors) if given, else the seeded tiny random ``SpeechTokenizer`` (said on stderr). ``--no-codes``
(with ``--format manifest``) writes no codes at all: answers are audio only, for a tokenizer trained later.

Output under ``--out``: ``audio/<id>_q.wav`` and ``audio/<id>_a.wav`` (espeak-ng's 22.05 kHz, 16-bit),
``train.jsonl`` (official sharegpt: system prompt, user audio with ``<|audio_pad|>`` x int(duration x 25),
assistant ``<|audio_bos|>`` x 10 + ``[AU####]`` codes) and/or ``manifest.jsonl`` (our manifest), and
``voices.jsonl``: per pair ``{"id", "question": [voice, speed], "answer": [voice, speed], "snr_db"}``. The
data files are read back and validated before the tool exits. The same arguments give the same files.

``python tools/synth_spoken_data.py`` is the same command from a checkout; ``main(argv)`` runs it in
process (tests, experiments).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from funaudiochat.drsr.prompts import DEFAULT_S2M_PROMPT
from funaudiochat.tokenizer import SpeechTokenizer, load_audio
from funaudiochat.training.data import (
    SPEECH_DELAY,
    ManifestEntry,
    ProblemLog,
    read_manifest,
    read_sharegpt,
    write_manifest,
    write_sharegpt,
)
from funaudiochat.training.data.jsonl import has_question_and_answer

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
FORMATS = ("sharegpt", "manifest", "both")
TOKENIZE_BATCH = 16


@dataclass(frozen=True)
class Pair:
    """One text question / answer pair and the id its files are named after."""

    id: str
    question: str
    answer: str


def read_pairs(path: Path) -> list[Pair]:
    """Read and validate a JSONL or TSV file of pairs (every problem reported at once).

    Raises:
        ValueError (DataValidationError): the problems, one per line.
    """
    if not path.is_file():
        raise ValueError(f"{path}: input file not found")
    log = ProblemLog(str(path))
    pairs: list[Pair] = []
    tsv = path.suffix.lower() in (".tsv", ".txt")
    seen: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or (tsv and line.lstrip().startswith("#")):
            continue
        if tsv:
            cells = line.split("\t")
            if len(cells) != 2:
                log.add(number, "line", f"{len(cells)} tab-separated cells", "question<TAB>answer")
                continue
            record = {"question": cells[0], "answer": cells[1]}
        else:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                log.add(
                    number, "json", f"not valid JSON ({err.msg} at column {err.colno})", "one object per line"
                )
                continue
            if not isinstance(record, dict):
                log.add(number, "json", "not an object", '{"question": ..., "answer": ..., "id": optional}')
                continue
        ok = has_question_and_answer(record, number, log, "non-empty text to speak")
        pair_id = record.get("id", f"qa{number:05d}")  # default: the line number
        if not isinstance(pair_id, str) or not ID_PATTERN.match(pair_id):
            log.add(number, "id", f"{pair_id!r}", "letters, digits, '_', '.', '-' (used in file names)")
            ok = False
        elif pair_id in seen:
            log.add(number, "id", f"duplicate {pair_id!r} (first on line {seen[pair_id]})", "unique ids")
            ok = False
        if ok:
            seen[pair_id] = number
            pairs.append(Pair(pair_id, record["question"].strip(), record["answer"].strip()))
    log.raise_if_any()
    if not pairs:
        raise ValueError(f"{path}: no question/answer pairs")
    return pairs


def question_voices(folder: Path) -> dict[str, str]:
    """Each pair's question voice, by pair id, from the ``voices.jsonl`` this tool wrote into ``folder``."""
    lines = (Path(folder) / "voices.jsonl").read_text(encoding="utf-8").splitlines()
    return {record["id"]: record["question"][0] for record in map(json.loads, filter(None, lines))}


def speak(espeak: str, text: str, voice: str, speed: int, out: Path) -> None:
    """``espeak-ng -v voice -s speed -w out --stdin`` with ``text`` on stdin."""
    result = subprocess.run(
        [espeak, "-v", voice, "-s", str(speed), "-w", str(out), "--stdin"],
        input=text,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not out.is_file():
        raise SystemExit(f"espeak-ng failed for voice {voice!r} on {text!r}: {result.stderr.strip()}")


def add_noise(path: Path, snr_db: float, rng: np.random.Generator) -> None:
    """Add white noise at ``snr_db`` (signal power over noise power) to the file, in place (16-bit)."""
    samples, rate = sf.read(str(path), dtype="float64", always_2d=False)
    power = float(np.mean(samples**2)) if samples.size else 0.0
    if power > 0:
        noise = rng.standard_normal(samples.shape) * np.sqrt(power / 10 ** (snr_db / 10))
        samples = np.clip(samples + noise, -1.0, 1.0)
    sf.write(str(path), samples, rate, subtype="PCM_16")


def encode_files(tokenizer: SpeechTokenizer, paths: Sequence[str | Path]) -> list[np.ndarray]:
    """The 25 Hz codes (int16) of each audio file, encoded ``TOKENIZE_BATCH`` files at a time."""
    codes: list[np.ndarray] = []
    for start in range(0, len(paths), TOKENIZE_BATCH):
        waves = [load_audio(p) for p in paths[start : start + TOKENIZE_BATCH]]
        codes += [c.numpy().astype(np.int16) for c in tokenizer.encode(waves)]
    return codes


def load_tokenizer(weights: str | None, seed: int) -> SpeechTokenizer:
    if weights:
        return SpeechTokenizer.from_safetensors(weights).eval()
    print(
        f"synth_spoken_data: no --tokenizer given; answer codes come from the tiny random SpeechTokenizer "
        f"(seed {seed}), fine for tests, not for training a real model",
        file=sys.stderr,
    )
    return SpeechTokenizer.random(seed=seed)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "pairs", type=Path, help="JSONL ({question, answer, id?}) or TSV (question<TAB>answer)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--voices", default="en-us", help="comma-separated espeak-ng voices to draw from")
    parser.add_argument("--speeds", default="160", help="comma-separated speeds (words per minute)")
    parser.add_argument("--answer-voice", help="one voice for every answer (default: drawn like questions)")
    parser.add_argument("--answer-speed", type=int, help="one speed for every answer")
    parser.add_argument("--seed", type=int, default=0, help="seed of voice/speed draws and noise")
    parser.add_argument("--snr-db", type=float, help="add white noise to the questions at this SNR (dB)")
    parser.add_argument("--noisy-answers", action="store_true", help="add the noise to the answers too")
    parser.add_argument("--tokenizer", help="speech tokenizer weights (safetensors); default: tiny random")
    parser.add_argument("--tokenizer-seed", type=int, default=0, help="seed of the tiny random tokenizer")
    parser.add_argument("--format", choices=FORMATS, default="both", help="which data files to write")
    parser.add_argument(
        "--no-codes",
        action="store_true",
        help="write no answer codes (manifest only; code the answer audio later with a trained tokenizer)",
    )
    parser.add_argument("--system", default=DEFAULT_S2M_PROMPT, help="system prompt of every example")
    parser.add_argument(
        "--delay", type=int, default=SPEECH_DELAY, help="<|audio_bos|> tokens before the codes"
    )
    parser.add_argument(
        "--relative-paths",
        action="store_true",
        help="write audio paths relative to --out (default: absolute)",
    )
    parser.add_argument("--espeak", default="espeak-ng", help="the espeak-ng executable")
    args = parser.parse_args(argv)
    args.voices = [v.strip() for v in args.voices.split(",") if v.strip()]
    try:
        args.speeds = [int(s) for s in args.speeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--speeds must be comma-separated integers, got {args.speeds!r}")
    if not args.voices or not args.speeds:
        parser.error("--voices and --speeds need at least one value each")
    if any(s <= 0 for s in args.speeds) or (args.answer_speed is not None and args.answer_speed <= 0):
        parser.error("speeds must be positive")
    if args.delay < 0:
        parser.error("--delay must be >= 0")
    if args.no_codes and (args.format != "manifest" or args.tokenizer):
        parser.error(
            "--no-codes writes the manifest only (--format manifest; sharegpt lines carry codes), "
            "with no --tokenizer"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    espeak = shutil.which(args.espeak)
    if espeak is None:
        raise SystemExit(f"{args.espeak} not found; install espeak-ng (bash tools/setup.sh)")
    try:
        pairs = read_pairs(args.pairs)
    except ValueError as err:
        raise SystemExit(str(err)) from err

    out = args.out.resolve()
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    questions, answers, speakers = [], [], []
    for index, pair in enumerate(pairs):
        q_voice, q_speed = rng.choice(args.voices), rng.choice(args.speeds)
        a_voice, a_speed = rng.choice(args.voices), rng.choice(args.speeds)
        a_voice = args.answer_voice or a_voice
        a_speed = args.answer_speed or a_speed
        q_path, a_path = audio_dir / f"{pair.id}_q.wav", audio_dir / f"{pair.id}_a.wav"
        speak(espeak, pair.question, q_voice, q_speed, q_path)
        speak(espeak, pair.answer, a_voice, a_speed, a_path)
        if args.snr_db is not None:
            noise_rng = np.random.default_rng([args.seed, index])
            add_noise(q_path, args.snr_db, noise_rng)
            if args.noisy_answers:
                add_noise(a_path, args.snr_db, noise_rng)
        questions.append(q_path)
        answers.append(a_path)
        speakers.append(
            {
                "id": pair.id,
                "question": [q_voice, q_speed],
                "answer": [a_voice, a_speed],
                "snr_db": args.snr_db,
            }
        )

    if args.no_codes:
        codes = [None] * len(answers)
    else:
        codes = encode_files(load_tokenizer(args.tokenizer, args.tokenizer_seed), answers)

    entries = [
        ManifestEntry(
            id=pair.id,
            audio=str(q_path),
            text=pair.question,
            answer_text=pair.answer,
            answer_codes=answer_codes,
            answer_audio=str(a_path),
            duration=sf.info(str(q_path)).duration,
            system=args.system,
        )
        for pair, q_path, a_path, answer_codes in zip(pairs, questions, answers, codes, strict=True)
    ]
    relative_to = out if args.relative_paths else None
    written = []
    if args.format in ("sharegpt", "both"):
        conversations = [e.to_conversation(delay=args.delay) for e in entries]
        written.append(write_sharegpt(out / "train.jsonl", conversations, relative_to=relative_to))
        read_sharegpt(out / "train.jsonl", expected_delay=args.delay, check_reference_audio=True)
    if args.format in ("manifest", "both"):
        written.append(write_manifest(out / "manifest.jsonl", entries, relative_to=relative_to))
        read_manifest(out / "manifest.jsonl")
    voices = out / "voices.jsonl"
    voices.write_text("".join(json.dumps(line) + "\n" for line in speakers), encoding="utf-8")
    written.append(voices)
    seconds = sum(e.duration or 0.0 for e in entries) + sum(sf.info(str(a)).duration for a in answers)
    print(
        f"synth_spoken_data: {len(entries)} pairs, {seconds:.1f} s of speech -> "
        + ", ".join(str(p) for p in written),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
