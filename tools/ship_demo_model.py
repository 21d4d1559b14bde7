"""Ship a demo build's pipeline folder as the package's embedded default model
(``packages/chat/src/funaudiochat/chat/demo_model/``, what ``funaudiochat chat`` uses with no ``--model``).

    python tools/ship_demo_model.py --package runs/demo/package --eval runs/demo_eval.json

The folder is loaded as a pipeline and checked against the 40 MiB limit; the evaluation of
``tools/eval_spoken_qa.py --out`` (``--eval``) becomes the model card's table; the bundled spoken questions
(``examples/questions``) are answered (greedy text, speech seed 0, as ``tests/chat/test_demo_model.py`` asks
them) and what the model said and what the independent recogniser heard are kept in
``bundled_answers.json``: the record the end-to-end regression test compares with. The shipped folder is
replaced as a whole (atomically).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "examples" / "questions"
FRAME_RATE = ROOT / "docs" / "experiments" / "frame_rate.json"
BUNDLED_ANSWERS = "bundled_answers.json"


def bundled_answers(folder: Path) -> list[dict]:
    """The pipeline in ``folder`` asked the bundled questions (``demo_eval.bundled_replies``): each
    question's file, words and key with the text answer, whether it holds the key, and what the
    recogniser hears in the spoken answer."""
    from funaudiochat.chat import Pipeline
    from funaudiochat.chat.demo_eval import bundled_replies
    from funaudiochat.training.demo.corpus import contains_key

    items, replies, heard = bundled_replies(Pipeline.from_pretrained(folder), QUESTIONS)
    return [
        {
            "audio": item["audio"],
            "question": item["question"],
            "key": item["key"],
            "text": reply.text,
            "text_right": contains_key(reply.text, item["key"]),
            "heard": said,
            "heard_right": contains_key(said, item["key"]),
        }
        for item, reply, said in zip(items, replies, heard, strict=True)
    ]


def standing(results: dict) -> str:
    """The card's opening paragraph on how far the model is from the demo's goals."""
    s2t, s2s = 100 * results["s2t"]["accuracy"], 100 * results["s2s"]["accuracy"]
    return (
        f"**Where it stands:** it answers {s2t:.0f} % of held-out spoken questions right in text, and an "
        f"independent recogniser hears the right answer in {s2s:.0f} % of its spoken ones; the goals are "
        "90 % and 80 % (the evaluation below).\n\n"
    )


def evaluation(results: dict) -> str:
    """The card's evaluation section: the table of ``eval_spoken_qa.py``'s ``results`` and its command."""
    from funaudiochat.chat.demo_eval import table

    limit = results["limit"]
    command = f"python tools/eval_spoken_qa.py --model <this folder> --run <its run> --limit {limit}"
    intro = f"Held-out phrasings and contents in voices training never heard (`{command}`):"
    return f"## Evaluation\n{intro}\n\n{table(results)}"


def frame_rate(results: dict) -> str:
    """The card's section on the 5 Hz claim: the table of ``tools/experiments/frame_rate.py``'s
    ``results`` (its ``frame_rate.json``: the recipe at 5 Hz and at 25 Hz), rendered by that script."""
    sys.path.insert(0, str(ROOT / "tools" / "experiments"))
    try:
        from frame_rate import table
    finally:
        sys.path.remove(str(ROOT / "tools" / "experiments"))
    command = f"python tools/experiments/frame_rate.py --run <the 5 Hz run> --limit {results['limit']}"
    return (
        "\n\n## The 5 Hz claim\n"
        "The recipe with the shared LLM at 5 Hz (group size 5) and at 25 Hz (group size 1), the same samples "
        f"and the same time (`{command}`; the method and what the figures mean: "
        "`docs/experiments/frame_rate.md`):\n\n"
        + table(results["arms"], results["timing"], results["flops_per_speech_second"])
    )


def with_clock_note(card: str, note: str) -> str:
    """``card`` (a package's model card) with the paragraph ``note`` after its time table, before the
    settings line.

    Raises:
        SystemExit: the card has no settings line to put it before."""
    table_end = card.find("\nSettings: `")
    if table_end < 0:
        raise SystemExit("--clock-note: the package's card has no 'Settings:' line after its time table")
    return f"{card[:table_end]}\n{note.strip()}\n{card[table_end:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, required=True, help="a demo build's package/ folder")
    parser.add_argument("--eval", type=Path, required=True, help="its eval_spoken_qa.py --out JSON")
    parser.add_argument(
        "--plain-ft",
        type=Path,
        help="eval_spoken_qa.py's JSON of the same recipe with plain fine-tuning instead of Core-Cocktail "
        "(--set cocktail_alpha=1.0): its text accuracy becomes a row of the card's table",
    )
    parser.add_argument(
        "--frame-rate",
        type=Path,
        default=FRAME_RATE,
        help="tools/experiments/frame_rate.py's JSON (its section is left out while there is none)",
    )
    parser.add_argument(
        "--clock-note",
        help="a paragraph put under the card's time table: how the build's clocks were taken (a build "
        "that shared the cores, or paused, before its clocks left pauses out)",
    )
    args = parser.parse_args(argv)
    from funaudiochat.base.atomic import atomic_folder
    from funaudiochat.chat.loaders import DEMO_MODEL
    from funaudiochat.training.demo.package_stage import MAX_PACKAGE_BYTES, folder_bytes

    size = folder_bytes(args.package)
    if size > MAX_PACKAGE_BYTES:
        raise SystemExit(
            f"{args.package}: {size / 2**20:.1f} MiB, more than the {MAX_PACKAGE_BYTES >> 20} MiB allowed"
        )
    results = json.loads(args.eval.read_text(encoding="utf-8"))
    if args.plain_ft is not None:
        results["text_plain_ft"] = json.loads(args.plain_ft.read_text(encoding="utf-8"))["text_final"]
    claim = ""
    if args.frame_rate.is_file():
        claim = frame_rate(json.loads(args.frame_rate.read_text(encoding="utf-8")))
    with atomic_folder(DEMO_MODEL) as staging:
        # the package stage's own record (stage.json) stays in the run folder
        shutil.copytree(
            args.package, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns("stage.json")
        )
        card = (staging / "README.md").read_text(encoding="utf-8").split("## Evaluation", 1)[0]
        title, _, rest = card.partition("\n\n")
        if rest.startswith("**Where it stands:**"):  # a package copied from a shipped folder: replaced
            rest = rest.partition("\n\n")[2]
        if args.clock_note:
            rest = with_clock_note(rest, args.clock_note)
        (staging / "README.md").write_text(
            f"{title}\n\n{standing(results)}{rest}{evaluation(results)}{claim}"
        )
        rows = bundled_answers(staging)
        (staging / BUNDLED_ANSWERS).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    for row in rows:
        print(f"{row['question']} -> {row['text']!r} (heard {row['heard']!r})")
    print(f"shipped {args.package} ({size / 2**20:.1f} MiB) to {DEMO_MODEL}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
