"""The official training data: sharegpt JSONL as Fun-Audio-Chat's ``process/data_process.py`` writes it.

One JSON object per line (reference §7; LLaMA-Factory ``dataset_info.json`` columns ``system``,
``messages``, ``audios`` -> ``"audio"``); each ``audio`` item is a JSON *string* holding an entry::

    {"system": "You are asked to generate both text and speech tokens at the same time.",
     "messages": [{"role": "user", "content": "<|audio_bos|><|AUDIO|><|audio_eos|>"},
                  {"role": "assistant", "content": "<|audio_bos|><|AUDIO|><|audio_eos|>"}],
     "audio": [json.dumps(USER_ENTRY, sort_keys=True), json.dumps(ASSISTANT_ENTRY, sort_keys=True)]}

    USER_ENTRY = {"path": "/data/q1.wav", "text": "", "token": "<|audio_pad|>" * 46,
                  "ref_path": "", "ref_text": "What is two plus three?"}
    ASSISTANT_ENTRY = {"path": "", "text": "Five.",
                       "token": "<|audio_bos|>" * 10 + "[AU0012][AU0873][AU6560]",
                       "ref_path": "/data/a1.wav", "ref_text": ""}

- ``audio`` holds one entry per ``<|audio_bos|><|AUDIO|><|audio_eos|>`` of the messages, in order; each
  entry is a JSON *string* (as the official script writes it; an object is accepted too) with ``path``,
  ``text``, ``token``, ``ref_path``, ``ref_text``.
- User entry: ``path`` = the wav, ``token`` = ``<|audio_pad|>`` x ``int(duration_s * 25)``, ``text`` "".
- Assistant entry: ``path`` "", ``text`` = the reply, ``token`` = ``<|audio_bos|>`` x 10 + ``[AU%04d]``
  codes (0..6560), ``ref_path`` = the reply's wav.

Also accepted: a system turn as ``messages[0]`` (instead of ``"system"``), LLaMA-Factory's default layout
``"conversations"`` with ``from``/``value`` and roles ``human``/``gpt``, the column name ``"audios"``, and
``wav_path`` for ``path``. ``write_sharegpt`` always writes the official layout.

``read_sharegpt`` checks everything before training and raises one ``DataValidationError`` listing every
problem of the file as ``file:line: field: what (allowed)``: malformed JSON, missing fields, unknown roles,
turns out of order, placeholder/entry count mismatch, malformed ``token`` strings, codes out of range, a
wrong speech delay, missing or unreadable audio, and a ``<|audio_pad|>`` count that does not match the
audio's duration (the official issue #30 crash).

Example:
    >>> conversations = read_sharegpt("train.jsonl")       # relative paths: against the file's folder
    >>> write_sharegpt("copy.jsonl", conversations)       # the same records, official layout
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from funaudiochat.drsr.text_tokenizer import AUDIO_TEMPLATE, AUDIO_TOKEN
from funaudiochat.tokenizer import DEFAULT_MAX_SECONDS, code_count

from ..atomic import atomic_write_text
from .audio_probe import READABLE, AudioInfo, AudioProber
from .errors import ProblemLog
from .jsonl import json_type, parse_json_object, read_lines, relative_path, resolve_path
from .records import AssistantSpeech, Conversation, Turn, UserAudio
from .speech_tokens import (
    ALLOWED_FORMS,
    AUDIO_PAD_TOKEN,
    SPEECH_DELAY,
    TokenStringError,
    assistant_token,
    parse_speech_token,
    user_token,
)

ENTRY_KEYS = ("path", "text", "token", "ref_path", "ref_text")
OFFICIAL_ROLES = {"user": "user", "assistant": "assistant"}
LLAMAFACTORY_ROLES = {"human": "user", "gpt": "assistant"}  # its default sharegpt tags
TURN_ORDER = "turns alternate user, assistant, user, ...; the last is assistant"


@dataclass
class _AudioCheck:
    """A file check left for the second pass (headers are read in parallel)."""

    line: int
    field: str
    path: str
    kind: str  # "user": pad count vs duration; "reference": code count vs duration
    count: int


def read_sharegpt(
    path: str | os.PathLike,
    *,
    audio_root: str | os.PathLike | None = None,
    check_audio: bool = True,
    check_reference_audio: bool = False,
    expected_delay: int | None = SPEECH_DELAY,
    max_audio_seconds: float | None = DEFAULT_MAX_SECONDS,
    num_threads: int = 8,
) -> list[Conversation]:
    """Read and validate an official sharegpt JSONL file.

    Args:
        path: the JSONL file (UTF-8, one object per line; blank lines are skipped).
        audio_root: folder that relative paths are relative to (default: the file's folder). Records hold
            the resolved paths.
        check_audio: read every user audio's header: the file must exist and be readable, at most
            ``max_audio_seconds`` long, and its ``<|audio_pad|>`` count must equal ``int(duration_s * 25)``
            (at the file's rate or at 16 kHz).
        check_reference_audio: also check each assistant ``ref_path`` (when not "") and that its code count
            matches its duration within one code.
        expected_delay: the number of ``<|audio_bos|>`` before the codes (official 10); None accepts any.
        num_threads: threads reading audio headers.

    Returns:
        one ``Conversation`` per line, ``source`` = ``"file:line"``.

    Raises:
        DataValidationError: listing every problem of the file (a ``ValueError``).
        ValueError: the file itself is missing.
    """
    file = Path(path)
    root = Path(audio_root) if audio_root is not None else file.parent
    log = ProblemLog(str(file))
    checks: list[_AudioCheck] = []
    conversations = []
    for number, text in read_lines(file, log):
        obj = parse_json_object(text, number, log)
        if obj is None:
            continue
        conv = parse_sharegpt_record(
            obj,
            source=f"{file}:{number}",
            line=number,
            log=log,
            audio_root=root,
            expected_delay=expected_delay,
            checks=checks,
        )
        if conv is not None:
            conversations.append(conv)
    if check_audio:
        wanted = [c for c in checks if c.kind == "user" or check_reference_audio]
        _run_audio_checks(wanted, log, max_audio_seconds, num_threads)
    log.problems.sort(key=lambda p: (p.line or 0, p.field))
    log.raise_if_any()
    return conversations


def parse_sharegpt_record(
    obj: Any,
    *,
    source: str,
    line: int,
    log: ProblemLog,
    audio_root: Path,
    expected_delay: int | None = SPEECH_DELAY,
    checks: list[_AudioCheck] | None = None,
) -> Conversation | None:
    """One decoded JSONL object -> a ``Conversation``, or None after adding its problems to ``log``.

    File checks (audio headers) are appended to ``checks`` for the caller to run; without ``checks``
    they are skipped.
    """
    before = len(log)
    if not isinstance(obj, dict):
        log.add(line, "json", f"a JSON {json_type(obj)}, not an object", "one JSON object per line")
        return None
    extra = {
        k: v for k, v in obj.items() if k not in ("system", "messages", "conversations", "audio", "audios")
    }

    system = obj.get("system")
    if system is not None and not isinstance(system, str):
        log.add(line, "system", f"a JSON {json_type(system)}", "a string, or absent for the default prompt")
        system = None
    turns, system = _parse_messages(obj, line, log, system)
    audios = _parse_audio_list(obj, line, log, turns, audio_root, expected_delay, checks)
    if len(log) > before or turns is None or audios is None:
        return None
    return Conversation(turns=turns, audios=audios, system=system, extra=extra, source=source)


def _parse_messages(
    obj: dict, line: int, log: ProblemLog, system: str | None
) -> tuple[list[Turn] | None, str | None]:
    has_messages, has_conversations = "messages" in obj, "conversations" in obj
    if has_messages and has_conversations:
        log.add(line, "messages", "both 'messages' and 'conversations' are present", "exactly one of them")
        return None, system
    if not has_messages and not has_conversations:
        log.add(line, "messages", "missing", 'a list of {"role", "content"} messages')
        return None, system
    key, role_key, content_key = (
        ("messages", "role", "content") if has_messages else ("conversations", "from", "value")
    )
    names = OFFICIAL_ROLES if has_messages else LLAMAFACTORY_ROLES
    allowed_roles = f"allowed: {', '.join(names)}; system only as the first message"
    messages = obj[key]
    if not isinstance(messages, list) or not messages:
        what = "an empty list" if isinstance(messages, list) else f"a JSON {json_type(messages)}"
        log.add(line, key, what, f'a list of {{"{role_key}", "{content_key}"}} messages, user first')
        return None, system

    turns: list[Turn] = []
    ok = True
    for i, message in enumerate(messages):
        where = f"{key}[{i}]"
        if not isinstance(message, dict):
            log.add(
                line, where, f"a JSON {json_type(message)}", f'an object {{"{role_key}", "{content_key}"}}'
            )
            ok = False
            continue
        role, content = message.get(role_key), message.get(content_key)
        if role is None:
            log.add(line, f"{where}.{role_key}", "missing", allowed_roles)
            ok = False
        elif role == "system" and i == 0:
            if system is not None:
                log.add(
                    line, f"{where}.{role_key}", "a system message and a top-level 'system'", "one of them"
                )
                ok = False
            elif not isinstance(content, str):
                log.add(line, f"{where}.{content_key}", f"a JSON {json_type(content)}", "a string")
                ok = False
            else:
                system = content
            continue
        elif not isinstance(role, str) or role not in names:
            log.add(line, f"{where}.{role_key}", f"unknown role {role!r}", allowed_roles)
            ok = False
        if content is None:
            log.add(line, f"{where}.{content_key}", "missing", f"a string, with {AUDIO_TEMPLATE} per audio")
            ok = False
        elif not isinstance(content, str):
            log.add(line, f"{where}.{content_key}", f"a JSON {json_type(content)}", "a string")
            ok = False
        elif content.count(AUDIO_TOKEN) != content.count(AUDIO_TEMPLATE):
            log.add(
                line,
                f"{where}.{content_key}",
                f"a {AUDIO_TOKEN} outside {AUDIO_TEMPLATE}",
                f"audio goes in as the whole {AUDIO_TEMPLATE}",
            )
            ok = False
        if ok:
            turns.append(Turn(names[role], content))
    if not ok:
        return None, system

    offset = 1 if messages and isinstance(messages[0], dict) and messages[0].get(role_key) == "system" else 0
    if not turns:
        log.add(line, key, "no user or assistant message", TURN_ORDER)
        return None, system
    for i, turn in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if turn.role != expected:
            log.add(
                line,
                f"{key}[{i + offset}].{role_key}",
                f"{turn.role!r} where {expected!r} belongs",
                TURN_ORDER,
            )
            return None, system
    if turns[-1].role != "assistant":
        log.add(line, key, f"ends with a {turns[-1].role!r} message", TURN_ORDER)
        return None, system
    return turns, system


def _parse_audio_list(
    obj: dict,
    line: int,
    log: ProblemLog,
    turns: list[Turn] | None,
    root: Path,
    expected_delay: int | None,
    checks: list[_AudioCheck] | None,
) -> list | None:
    if "audio" in obj and "audios" in obj:
        log.add(line, "audio", "both 'audio' and 'audios' are present", "exactly one of them")
        return None
    key = "audio" if "audio" in obj or "audios" not in obj else "audios"
    entries = obj.get(key)
    placeholders = sum(t.num_audios for t in turns) if turns is not None else None
    per_entry = f"one entry per {AUDIO_TEMPLATE} of the messages, in order"
    if entries is None:
        if placeholders:
            log.add(line, key, "missing", per_entry)
            return None
        entries = []
    if not isinstance(entries, list):
        log.add(line, key, f"a JSON {json_type(entries)}", f"a list of JSON strings, {per_entry}")
        return None
    if placeholders is not None and placeholders != len(entries):
        log.add(
            line,
            key,
            f"{len(entries)} entries for {placeholders} audio placeholders in the messages",
            per_entry,
        )
        return None
    roles = (
        [t.role for t in turns for _ in range(t.num_audios)] if turns is not None else [None] * len(entries)
    )

    audios = []
    for i, (raw, role) in enumerate(zip(entries, roles, strict=True)):
        audio = _parse_entry(raw, f"{key}[{i}]", role, line, log, root, expected_delay, checks)
        audios.append(audio)
    return None if any(a is None for a in audios) else audios


def _parse_entry(
    raw: Any,
    where: str,
    role: str | None,
    line: int,
    log: ProblemLog,
    root: Path,
    expected_delay: int | None,
    checks: list[_AudioCheck] | None,
) -> UserAudio | AssistantSpeech | None:
    keys_allowed = f"a JSON object string with keys {', '.join(ENTRY_KEYS)}"
    if isinstance(raw, str):
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError as err:
            log.add(line, where, f"not valid JSON ({err.msg} at character {err.pos})", keys_allowed)
            return None
    else:
        entry = raw
    if not isinstance(entry, dict):
        log.add(line, where, f"a JSON {json_type(entry)}", keys_allowed)
        return None

    ok = True
    fields: dict[str, str] = {}
    for name in ENTRY_KEYS:
        value = entry.get(name)
        if name == "path" and value is None:
            value = entry.get("wav_path")
        if value is None:
            if name in ("token", "text"):
                hint = "the speech token string" if name == "token" else 'a string ("" for user audio)'
                log.add(line, f"{where}.{name}", "missing", hint)
                ok = False
            value = ""
        elif not isinstance(value, str):
            log.add(line, f"{where}.{name}", f"a JSON {json_type(value)}", "a string")
            ok = False
        fields[name] = value
    extra = {k: v for k, v in entry.items() if k not in ENTRY_KEYS and k != "wav_path"}
    if not ok:
        return None
    try:
        parsed = parse_speech_token(fields["token"])
    except TokenStringError as err:
        log.add(line, f"{where}.token", str(err))
        return None

    path, ref_path = resolve_path(fields["path"], root), resolve_path(fields["ref_path"], root)
    if parsed.is_user:
        if role == "assistant":
            log.add(
                line,
                f"{where}.token",
                f"{AUDIO_PAD_TOKEN} (user audio) in an assistant turn",
                "assistant speech is <|audio_bos|> x delay then [AU####] codes",
            )
            return None
        if not fields["path"]:
            log.add(line, f"{where}.path", "empty for user audio", "the user's audio file")
            return None
        if checks is not None:
            checks.append(_AudioCheck(line, where, path, "user", parsed.num_pads))
        return UserAudio(
            path=path,
            num_frames=parsed.num_pads,
            text=fields["text"],
            ref_path=ref_path,
            ref_text=fields["ref_text"],
            extra=extra,
        )
    if role == "user":
        log.add(
            line,
            f"{where}.token",
            "assistant speech codes in a user turn",
            f"user audio is {AUDIO_PAD_TOKEN} x int(duration_s * 25) with a path",
        )
        return None
    if expected_delay is not None and parsed.delay != expected_delay:
        log.add(
            line,
            f"{where}.token",
            f"{parsed.delay} <|audio_bos|> before the codes",
            f"{expected_delay}, the speech delay of the data",
        )
        return None
    codes = parsed.codes
    assert codes is not None
    if checks is not None and fields["ref_path"]:
        checks.append(_AudioCheck(line, where, ref_path, "reference", int(codes.shape[0])))
    return AssistantSpeech(
        text=fields["text"],
        codes=codes,
        delay=parsed.delay,
        path=path,
        ref_path=ref_path,
        ref_text=fields["ref_text"],
        extra=extra,
    )


def _run_audio_checks(
    checks: Sequence[_AudioCheck], log: ProblemLog, max_seconds: float | None, num_threads: int
) -> None:
    prober = AudioProber(max_seconds)
    unique = sorted({c.path for c in checks})

    def probe(p: str) -> AudioInfo | ValueError:
        try:
            return prober(p)
        except ValueError as err:
            return err

    with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
        results = dict(zip(unique, pool.map(probe, unique), strict=True))
    limit = f" of at most {max_seconds:g} s" if max_seconds is not None else ""
    for check in checks:
        info = results[check.path]
        field = f"{check.field}.path" if check.kind == "user" else f"{check.field}.ref_path"
        if isinstance(info, ValueError):
            log.add(check.line, field, str(info), READABLE + limit)
            continue
        if check.kind == "user":
            accepted = sorted(info.accepted_frame_counts)
            if check.count not in accepted:
                want = " or ".join(str(n) for n in accepted)
                log.add(
                    check.line,
                    f"{check.field}.token",
                    f"{check.count} {AUDIO_PAD_TOKEN} for {info.duration:.3f} s of audio in {check.path}",
                    f"{want} = int(duration_s * 25); a mismatch is the token/feature length crash of "
                    "Fun-Audio-Chat issue #30",
                )
        else:
            expected = code_count(info.num_samples_16k)
            if abs(check.count - expected) > 1:
                log.add(
                    check.line,
                    f"{check.field}.token",
                    f"{check.count} codes for {info.duration:.3f} s of reference audio in {check.path}",
                    f"{expected} +- 1 codes at 25 Hz",
                )


# ------------------------------------------------------------------------------------------------ write


def conversation_to_sharegpt(conv: Conversation, relative_to: str | os.PathLike | None = None) -> dict:
    """The official JSON object of ``conv`` (keys ``system`` when set, ``messages``, ``audio``, then
    ``extra``); audio entries are JSON strings with sorted keys, as the official script writes them.
    ``relative_to``: write paths relative to this folder (default: as stored)."""
    out: dict[str, Any] = {}
    if conv.system is not None:
        out["system"] = conv.system
    out["messages"] = [{"role": t.role, "content": t.content} for t in conv.turns]
    entries = []
    for audio in conv.audios:
        if isinstance(audio, UserAudio):
            token = user_token(audio.num_frames)
        else:
            if audio.codes is None:
                raise ValueError(
                    f"{conv.source or 'conversation'}: assistant speech of {audio.ref_path!r} has no codes; "
                    "tokenize it first (CodesCache.fill)"
                )
            token = assistant_token(audio.codes, audio.delay)
        entry = {
            "path": relative_path(audio.path, relative_to),
            "text": audio.text,
            "token": token,
            "ref_path": relative_path(audio.ref_path, relative_to),
            "ref_text": audio.ref_text,
            **audio.extra,
        }
        entries.append(json.dumps(entry, ensure_ascii=False, sort_keys=True))
    out["audio"] = entries
    out.update(conv.extra)
    return out


def write_sharegpt(
    path: str | os.PathLike,
    conversations: Iterable[Conversation],
    *,
    relative_to: str | os.PathLike | None = None,
) -> Path:
    """Write ``conversations`` as official sharegpt JSONL (atomically); returns the path."""
    lines = [json.dumps(conversation_to_sharegpt(c, relative_to), ensure_ascii=False) for c in conversations]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


__all__ = [
    "ALLOWED_FORMS",
    "conversation_to_sharegpt",
    "parse_sharegpt_record",
    "read_sharegpt",
    "write_sharegpt",
]
