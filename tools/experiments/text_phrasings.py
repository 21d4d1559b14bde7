"""Which held-out phrasings do text LLMs answer? Each model's greedy replies to the held-out phrasings of
the question-answering tasks (as the ``text_lm`` stage scores them: right when the reply holds the key),
per phrasing, with the standard error clustered by phrasing; several text LLMs of one corpus side by side.

    python tools/experiments/text_phrasings.py --run runs/demo \\
        --model shipped=artifacts/demo_build/text_lm/model --model new=runs/demo/text_lm/model [--out F]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def phrasing_items(corpus: Path) -> list:
    """The held-out phrasings of the question-answering tasks as ``HeldOutItem``s (text only, no audio)."""
    from funaudiochat.chat.demo_eval import HeldOutItem
    from funaudiochat.training.demo.text_stages import corpus_pairs

    return [
        HeldOutItem(
            r["id"],
            r["task"],
            r["split"],
            "",
            r["question"],
            r["answer"],
            tuple(r["key"]),
            phrasing=r["phrasing"],
        )
        for r in corpus_pairs(corpus, ["heldout_phrasing"])
    ]


def table(scores: dict[str, dict]) -> str:
    """Per-phrasing accuracies as a Markdown table, one column per model, the totals first."""
    names = list(scores)
    lines = ["| phrasing | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    total = [f"{100 * s['accuracy']:.1f} ± {100 * s['se_by_phrasing']:.1f} %" for s in scores.values()]
    lines.append("| all (± over phrasings) | " + " | ".join(total) + " |")
    for phrasing in scores[names[0]]["per_phrasing"]:
        cells = [f"{100 * s['per_phrasing'][phrasing]:.0f} %" for s in scores.values()]
        lines.append(f"| {phrasing} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the demo run folder (its corpus)")
    parser.add_argument(
        "--model", action="append", required=True, metavar="NAME=FOLDER", help="a text LLM (repeatable)"
    )
    parser.add_argument("--out", type=Path, help="write the results here (JSON)")
    args = parser.parse_args(argv)
    models = {}
    for given in args.model:
        name, sep, folder = given.partition("=")
        if not sep or not name or not folder:
            parser.error(f"--model wants NAME=FOLDER, got {given!r}")
        models[name] = Path(folder)
    from funaudiochat.chat.demo_eval import key_score
    from funaudiochat.training.demo.text_stages import greedy_replies
    from transformers import AutoModelForCausalLM, AutoTokenizer

    items = phrasing_items(args.run / "corpus")
    scores = {}
    for name, folder in models.items():
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        replies = greedy_replies(model, tokenizer, [i.question for i in items])
        scores[name] = {"model": str(folder), **key_score(items, replies)}
    print(table(scores))
    if args.out is not None:
        from funaudiochat.base.atomic import atomic_write_text

        atomic_write_text(args.out, json.dumps(scores, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
