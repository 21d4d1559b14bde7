"""Does the Speech Refined Head stay on its words when it runs on its own output? The SRH alone, on the
conditioning of a teacher-forced forward, free-running against the same head teacher-forced.

    python tools/experiments/srh_free_run.py --model runs/demo/package \
        --conversations runs/demo/conversations/train.jsonl [--rows 10] [--prefill pad|bos] \
        [--no-listen] [--out free_run.json]

For each of the first ``--rows`` conversations that end with a spoken reply, one teacher-forced forward
gives the SRH's conditioning (LLM state + text embedding at every 5 Hz position) and its teacher-forced
codes (the argmax given the reference's previous codes). The head then writes the reply from the same
conditioning on its own (``SpeechRefinedHead.step``, greedy), feeding back what it chose. Both are compared
with the reference codes position by position, and with ``--model`` a pipeline folder the vocoder renders
reference, teacher-forced and free-running codes and pocketsphinx (``listen.Recognizer`` over the file's
reply texts) says what it hears in each. A head that is right teacher-forced but wrong free-running is
derailed by its own mistakes (exposure bias), not short of knowledge.

``--prefill pad`` (default) feeds the prompt's positions the pad id as their previous token, as training
does (``FunAudioChatForConditionalGeneration.forward``), so the first free-running step sees what training
showed; ``bos`` is the official decoding loop's prefill (BOS at every prompt position, then the head's own
picks).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
from collections.abc import Callable
from pathlib import Path


def _probe_module():
    spec = importlib.util.spec_from_file_location("srh_probe", Path(__file__).with_name("srh_probe.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def teacher_forced(model, batch: dict, reply_codes) -> tuple:
    """One teacher-forced forward of a one-conversation ``batch``: the SRH's conditioning ``[1, S, D]``, its
    logits ``[N, V]`` and reference codes ``[N]`` at the trained positions, and the SRH position whose
    targets are the reply's first group."""
    import torch

    seen = {}
    handle = model.audio_invert_tower.register_forward_pre_hook(
        lambda module, args: seen.update(conditioning=args[0].detach())
    )
    accepted = set(inspect.signature(model.forward).parameters)
    try:
        with torch.no_grad():
            out = model(**{k: v for k, v in batch.items() if k in accepted}, return_speech_logits=True)
    finally:
        handle.remove()
    logits, codes = reply_codes(out, model.config.ignore_index)
    trained = (out.speech_targets[0] != model.config.ignore_index).nonzero()[:, 0]
    return seen["conditioning"], logits, codes, int(trained[0]) // model.group_size


def free_run(
    model, conditioning, first: int, pick: Callable, prefill: str = "pad", max_groups: int | None = None
):
    """The codes the SRH writes from position ``first`` of ``conditioning [1, S, D]`` on, one group per
    position, until a group holds the speech EOS (kept) or the positions (or ``max_groups``) run out.

    pick: ``pick(logits [1, V], j) -> ids [1]`` chooses each token (greedy: ``logits.argmax(-1)``);
    prefill: "pad" (the prompt's previous tokens are the pad id, as in training) or "bos" (the official
    decoding loop: BOS at every prompt position, the last position's own picks kept)."""
    import torch

    if prefill not in ("pad", "bos"):
        raise ValueError(f"prefill must be 'pad' or 'bos', got {prefill!r}")
    srh, audio = model.audio_invert_tower, model.config.audio_config
    state = srh.init_state(1, conditioning.device)
    positions = torch.arange(conditioning.shape[1], device=conditioning.device)[None]
    one = torch.ones(1, 1, dtype=torch.long, device=conditioning.device)
    with torch.no_grad():
        if first > 0:
            if prefill == "pad":
                prompt_pick = lambda logits, j: torch.full((1,), audio.pad_token_id)  # noqa: E731
                prefix = audio.pad_token_id
            else:
                prompt_pick, prefix = (lambda logits, j: logits.argmax(-1)), audio.bos_token_id
            srh.step(
                conditioning[:, :first],
                state,
                positions=positions[:, :first],
                valid=one.expand(1, first),
                pick=prompt_pick,
                prefix_token=prefix,
            )
        groups = []
        last = conditioning.shape[1] if max_groups is None else min(conditioning.shape[1], first + max_groups)
        for p in range(first, last):
            group = srh.step(
                conditioning[:, p : p + 1], state, positions=positions[:, p : p + 1], valid=one, pick=pick
            )
            groups.append(group[0])
            if bool((group == audio.eos_token_id).any()):
                break
    return torch.cat(groups) if groups else torch.zeros(0, dtype=torch.long)


def agreement(codes, reference) -> float:
    """Share of positions where ``codes`` equals ``reference`` (over the shorter of the two)."""
    n = min(len(codes), len(reference))
    return float((codes[:n] == reference[:n]).float().mean()) if n else 0.0


def run(args) -> dict:
    from funaudiochat.drsr import FunAudioChatForConditionalGeneration
    from funaudiochat.training.demo.listen import words_of
    from funaudiochat.training.demo.reply_alignment import SIL

    probe = _probe_module()
    data = probe.speech_rows(args.conversations, args.processor or args.model, args.rows)
    lines = probe.spoken_lines(args.conversations, args.rows)
    # word-aligned replies (``reply_alignment="words"``) hold <|sil|> between their words
    texts = [json.loads(json.loads(line)["audio"][-1]).get("text", "").replace(SIL, " ") for line in lines]
    listen = None
    if not args.listen:
        model = FunAudioChatForConditionalGeneration.from_pretrained(str(args.model)).eval()
    else:
        from funaudiochat.chat import Pipeline
        from funaudiochat.chat.voices import resolve_voice
        from funaudiochat.training.demo.listen import Recognizer

        pipe = Pipeline.from_pretrained(args.model)
        model = pipe.model  # the same weights, loaded once
        recognizer = Recognizer(texts)
        speaker = resolve_voice(None, pipe.vocoder.speakers, pipe.speech_tokenizer)
        from funaudiochat.base.constants import VOCODER_SAMPLE_RATE as rate

        def listen(codes) -> str:
            codes = codes[(codes >= 0) & (codes < 6561)]
            if len(codes) < 3:
                return ""
            audio = pipe.vocoder.synthesize(codes, speaker, chunk_tokens=pipe.hop_tokens)
            return " ".join(words_of(recognizer.transcribe(audio, rate)))

    greedy = lambda logits, j: logits.argmax(-1)  # noqa: E731
    rows = []
    for index in range(len(data.train_set)):
        batch = data.collate([data.train_set[index]])
        conditioning, logits, reference, first = teacher_forced(model, batch, probe.reply_codes)
        forced = logits.argmax(-1)
        free = free_run(model, conditioning, first, greedy, args.prefill, max_groups=len(reference) // 5 + 20)
        row = {
            "reply": " ".join(words_of(texts[index])),
            "codes": len(reference),
            "free_codes": len(free),
            "teacher_forced_agreement": agreement(forced, reference),
            "free_running_agreement": agreement(free, reference),
        }
        if listen is not None:
            for name, codes in (("reference", reference), ("teacher_forced", forced), ("free_running", free)):
                row[f"{name}_heard"] = listen(codes)
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        key: sum(r[key] for r in rows) / len(rows)
        for key in ("teacher_forced_agreement", "free_running_agreement")
    }
    if listen is not None:
        for name in ("reference", "teacher_forced", "free_running"):
            summary[f"{name}_heard_exactly"] = sum(r[f"{name}_heard"] == r["reply"] for r in rows) / len(rows)
    return {"rows": rows, "summary": summary}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    probe = _probe_module()
    probe.add_reply_arguments(parser)
    parser.add_argument("--rows", type=int, default=10, help="spoken replies measured")
    parser.add_argument("--prefill", choices=("pad", "bos"), default="pad", help="prompt's previous tokens")
    parser.add_argument("--no-listen", dest="listen", action="store_false", help="codes only (no vocoder)")
    parser.add_argument("--out", type=Path, help="write every row and the summary as JSON here")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    result = probe.single_threaded(run, args)
    for key, value in result["summary"].items():
        print(f"{key}: {value:.3f}")
    probe.write_result(args.out, args, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
