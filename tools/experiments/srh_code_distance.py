"""How far are the speaking head's wrong codes from the right ones? Teacher-forced, in FSQ digits.

    python tools/experiments/srh_code_distance.py --model runs/demo6/package \
        --conversations runs/demo6/conversations/heldout.jsonl [--rows 20] [--out distance.json]

The speech tokenizer's codes are FSQ 3^8: code ``c`` is eight ternary digits ``(c // 3**i) % 3``. For the
spoken replies of the first ``--rows`` conversations, the Speech Refined Head predicts each code given the
reference's previous codes (one teacher-forced forward, as ``srh_free_run.py``); this counts the predicted
code's distance from the reference in digits (0: right; 1: one digit one step off, an acoustically near
code) and how often the reference is among the head's five best. A head whose misses are mostly near codes
says the reply's sound nearly right teacher-forced, and free-running is fed codes it has seldom been fed.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
from pathlib import Path

from funaudiochat.base.constants import SPEECH_CODES


def digits(code: int) -> list[int]:
    return [(code // 3**i) % 3 for i in range(8)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a pipeline or checkpoint folder")
    parser.add_argument(
        "--conversations", type=Path, required=True, help="sharegpt JSONL with spoken replies"
    )
    parser.add_argument("--processor", type=Path, help="processor folder (default: --model)")
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from funaudiochat.drsr import FunAudioChatForConditionalGeneration

    spec = importlib.util.spec_from_file_location("srh_free_run", Path(__file__).with_name("srh_free_run.py"))
    free_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(free_run)
    probe = free_run._probe_module()
    model = FunAudioChatForConditionalGeneration.from_pretrained(str(args.model)).eval()
    data = probe.speech_rows(args.conversations, args.processor or args.model, args.rows)
    distance, total, in_top5 = collections.Counter(), 0, 0
    for index in range(len(data.train_set)):
        batch = data.collate([data.train_set[index]])
        _, logits, reference, _ = free_run.teacher_forced(model, batch, probe.reply_codes)
        best5 = (logits.topk(5, -1).indices == reference[:, None]).any(-1)
        for picked, right, near in zip(
            logits.argmax(-1).tolist(), reference.tolist(), best5.tolist(), strict=True
        ):
            if right >= SPEECH_CODES:  # the BOS delay and the end
                continue
            total += 1
            in_top5 += near
            key = (
                "special"
                if picked >= SPEECH_CODES
                else str(sum(a != b for a, b in zip(digits(picked), digits(right), strict=True)))
            )
            distance[key] += 1
    result = {
        "codes": total,
        "reference_in_top5": in_top5 / total,
        "digits_off": {key: distance[key] / total for key in sorted(distance)},
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
