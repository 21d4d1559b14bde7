"""What does the audio encoder hear? Its greedy 5 Hz token-CTC transcripts against the transcripts, as token
error rate (edit distance over the text LLM's tokens), per speech group and per question voice.

    python tools/experiments/tower_hearing.py --run runs/demo [--tower runs/demo/audio_encoder] \
        [--limit 300] [--groups heldout,train_a,heldout_in_training_voices] [--out hearing.json]

``--tower`` is a folder with the exported tower (``audio_encoder.safetensors``) and the Lightning run that
made it (its newest checkpoint holds the learnt CTC blank; read with ``torch.load(weights_only=True)``).
The groups are folders of ``RUN/speech`` (``heldout``: held-out phrasings in held-out voices; ``train_a``:
training sentences in training voices), plus ``heldout_in_training_voices``: the held-out questions spoken
here in the training voices and speeds (espeak-ng), which tells new voices and new phrasings apart.
Every ``len / limit``-th question of a group is transcribed, at most ``--limit``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def load_tower(tower: Path, text_lm: Path):
    """The tower and its token-CTC head (blank from the run's newest checkpoint; its table is ``text_lm``'s
    input embeddings, or the checkpoint's own when the tower learnt one: ``tower_token_table=learnt``)."""
    import torch
    from funaudiochat.base.weights import read_safetensors
    from funaudiochat.tokenizer.audio_encoder import AudioEncoderConfig, ContinuousAudioEncoder
    from funaudiochat.training.llm.audio_encoder import TokenCTCHead, read_llm_input_embeddings

    state, metadata = read_safetensors(tower / "audio_encoder.safetensors")
    encoder = ContinuousAudioEncoder(AudioEncoderConfig(**json.loads(metadata["config"])))
    encoder.load_state_dict(state)
    checkpoints = sorted(tower.rglob("checkpoints/*.ckpt"), key=lambda path: path.stat().st_mtime)
    if not checkpoints:
        raise SystemExit(f"{tower}: no Lightning checkpoint (the CTC blank is kept there)")
    learnt = torch.load(checkpoints[-1], map_location="cpu", weights_only=True)["state_dict"]
    prefix = "token_head."
    own = learnt.get(prefix + "embeddings")
    head = TokenCTCHead(read_llm_input_embeddings(text_lm) if own is None else own, learnt=own is not None)
    state = {k.removeprefix(prefix): v for k, v in learnt.items() if k.startswith(prefix)}
    state.setdefault("log_scale", head.log_scale.detach())  # runs from before the learnt scale: 1
    head.load_state_dict(state)
    return encoder.eval(), head.eval(), int(metadata.get("group_size", 5))


def transcribe(encoder, head, group_size: int, audio: Path) -> list[int]:
    """Greedy CTC over the 5 Hz groups: the text-token ids heard in ``audio``."""
    import torch
    from funaudiochat.tokenizer.audio import load_audio
    from funaudiochat.tokenizer.frontend import log_mel_spectrogram
    from funaudiochat.training.llm.audio_encoder import group_mean
    from funaudiochat.training.tokenizer import greedy_decode

    mel = log_mel_spectrogram(load_audio(audio, 16000))[None]
    with torch.no_grad():
        hidden, lengths = encoder(mel, torch.tensor([mel.shape[-1]]))
        grouped, groups = group_mean(hidden, lengths, group_size)
        best = head(grouped.float())[0, : int(groups[0])].argmax(-1).tolist()
    return [label - 1 for label in greedy_decode(best)]  # class i + 1 is token i, 0 the blank


def pick(rows: list, limit: int) -> list:
    """Every ``len / limit``-th row, at most ``limit``."""
    return rows[:: max(1, len(rows) // limit)][:limit]


def speak_in_training_voices(heldout: Path, out: Path, limit: int) -> Path:
    """The questions of ``heldout`` (those ``pick`` takes) spoken in the training voices and speeds into
    ``out`` (a speech group)."""
    from funaudiochat.training.data.synth import speak
    from funaudiochat.training.demo.speech_stages import QUESTION_SPEEDS, TRAIN_VOICES

    rows = [json.loads(line) for line in (heldout / "manifest.jsonl").read_text().splitlines() if line]
    rows = pick(rows, limit)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    manifest, voices = [], []
    for index, row in enumerate(rows):
        voice = TRAIN_VOICES[index % len(TRAIN_VOICES)]
        speed = QUESTION_SPEEDS[(index // len(TRAIN_VOICES)) % len(QUESTION_SPEEDS)]
        name = f"audio/{row['id']}_q.wav"
        speak("espeak-ng", row["text"], voice, speed, out / name)
        manifest.append({"id": row["id"], "audio": name, "text": row["text"]})
        voices.append({"id": row["id"], "question": [voice, speed]})
    (out / "manifest.jsonl").write_text("".join(json.dumps(m) + "\n" for m in manifest))
    (out / "voices.jsonl").write_text("".join(json.dumps(v) + "\n" for v in voices))
    return out


def training_words(run: Path) -> set[str]:
    """Every word (lower case) of the training questions and answers of a demo run's corpus."""
    from funaudiochat.training.demo.corpus import words_of
    from funaudiochat.training.demo.family import TASKS
    from funaudiochat.training.demo.text_stages import corpus_pairs

    records = corpus_pairs(run / "corpus", ("train",), TASKS)
    return {word for r in records for word in words_of(r["question"]) + words_of(r["answer"])}


def hearing(encoder, head, group_size: int, tokenizer, group: Path, limit: int, known: set[str]) -> dict:
    """Token error, exact transcripts and per-voice error of the tower on ``group``, and how many of the
    words no training sentence has (not in ``known``) its transcripts hold."""
    from funaudiochat.training.data.synth import question_voices
    from funaudiochat.training.demo.corpus import words_of
    from funaudiochat.training.tokenizer import edit_distance

    rows = [json.loads(line) for line in (group / "manifest.jsonl").read_text().splitlines() if line]
    rows = pick(rows, limit)
    voice_of = question_voices(group)
    errors = tokens = exact = new_words = new_heard = 0
    per_voice: dict[str, list[int]] = {}
    examples = []
    for row in rows:
        heard = transcribe(encoder, head, group_size, group / row["audio"])
        said = tokenizer(row["text"], add_special_tokens=False).input_ids
        wrong = edit_distance(heard, said)
        errors, tokens, exact = errors + wrong, tokens + len(said), exact + (wrong == 0)
        counts = per_voice.setdefault(voice_of[row["id"]], [0, 0])
        counts[0], counts[1] = counts[0] + wrong, counts[1] + len(said)
        heard_text = tokenizer.decode(heard)
        new = [word for word in words_of(row["text"]) if word not in known]
        new_words += len(new)
        heard_words = set(words_of(heard_text))
        new_heard += sum(word in heard_words for word in new)
        if len(examples) < 8:
            examples.append({"said": row["text"], "heard": heard_text})
    return {
        "token_error_rate": round(errors / tokens, 4),
        "exact": round(exact / len(rows), 4),
        "new_words": new_words,
        "new_words_heard": new_heard,
        "n": len(rows),
        "per_voice": {voice: round(e / t, 4) for voice, (e, t) in sorted(per_voice.items())},
        "examples": examples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a demo run folder (speech, text_lm)")
    parser.add_argument("--tower", type=Path, help="tower folder (default RUN/audio_encoder)")
    parser.add_argument("--limit", type=int, default=300, help="questions per group at most")
    parser.add_argument("--groups", default="heldout,train_a,heldout_in_training_voices")
    parser.add_argument("--out", type=Path, help="write the results here (JSON)")
    args = parser.parse_args(argv)
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(1)
    tower = args.tower or args.run / "audio_encoder"
    encoder, head, group_size = load_tower(tower, args.run / "text_lm" / "model")
    tokenizer = AutoTokenizer.from_pretrained(args.run / "text_lm" / "model")
    results = {"tower": str(tower)}
    known = training_words(args.run)
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.groups.split(","):
            if name == "heldout_in_training_voices":
                heldout = args.run / "speech" / "heldout"
                group = speak_in_training_voices(heldout, Path(scratch) / name, args.limit)
            else:
                group = args.run / "speech" / name
            results[name] = found = hearing(encoder, head, group_size, tokenizer, group, args.limit, known)
            words = f"new words heard {found['new_words_heard']} of {found['new_words']}"
            print(name, found["token_error_rate"], found["exact"], words, flush=True)
    if args.out:
        from funaudiochat.base.atomic import atomic_write_text

        atomic_write_text(args.out, json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
