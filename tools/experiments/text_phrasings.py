"""Which held-out phrasings do text LLMs answer? Each model's greedy replies to the held-out phrasings of
the question-answering tasks (as the ``text_lm`` stage scores them: right when the reply holds the key),
per phrasing, with the standard error clustered by phrasing; several text LLMs of one corpus side by side.

    python tools/experiments/text_phrasings.py --run runs/demo \\
        --model shipped=artifacts/demo_build/text_lm/model --model new=runs/demo/text_lm/model [--out F]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _text_models import add_model_arguments, load_text_lm, named_models, write_results  # this folder


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
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    models = named_models(parser, args.model)
    from funaudiochat.chat.demo_eval import key_score
    from funaudiochat.training.demo.text_stages import greedy_replies

    items = phrasing_items(args.run / "corpus")
    scores = {}
    for name, folder in models.items():
        model, tokenizer = load_text_lm(folder)
        replies = greedy_replies(model, tokenizer, [i.question for i in items])
        scores[name] = {"model": str(folder), **key_score(items, replies)}
    print(table(scores))
    write_results(args.out, scores)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
