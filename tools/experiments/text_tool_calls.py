"""Do text LLMs write the right tool call? Each model's greedy reply to the corpus's tool requests, written
(not spoken), under the function-calling system prompt of the corpus's tools, as the pipeline prompts a
request with tools: right when the reply parses (``prompts.parse_tool_calls``) to exactly one call of the
request's function with its arguments (``demo_eval.exact_call``, as the evaluation scores spoken
requests). Per split (the training requests every ``--every``-th) and per phrasing; the format alone (one
call of the right function) too.

    python tools/experiments/text_tool_calls.py --run runs/demo \\
        --model copy=runs/demo/text_lm_copy/model [--model other=FOLDER] [--every 6] [--out F]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _text_models import add_model_arguments, load_text_lm, named_models, write_results  # this folder

SPLITS = ("train", "heldout_phrasing", "heldout_content")


def tool_requests(corpus: Path, every: int = 1) -> list[dict]:
    """The corpus's tool pairs of each of ``SPLITS`` (the training split's every ``every``-th)."""
    from funaudiochat.training.demo.text_stages import corpus_pairs

    requests = []
    for split in SPLITS:
        records = corpus_pairs(corpus, [split], ("tool",))
        requests += records[::every] if split == "train" else records
    return requests


def scored(request: dict, reply: str) -> dict:
    """``request``'s outcome for ``reply``: ``format`` (one call of the right function) and ``right``
    (its arguments too), with the parsed calls (or the parse error) for reading."""
    from funaudiochat.chat.demo_eval import exact_call
    from funaudiochat.drsr.prompts import parse_tool_calls

    try:
        calls = parse_tool_calls(reply)
    except ValueError as error:
        return {"format": False, "right": False, "calls": str(error)}
    expected = request["tool_call"]
    shaped = len(calls) == 1 and calls[0].name == expected["name"]
    right = exact_call(calls, expected)
    return {"format": shaped, "right": right, "calls": [[c.name, c.arguments] for c in calls]}


def summary(requests: list[dict], outcomes: list[dict]) -> dict:
    """Right and well-formed shares per split and the right share per phrasing (``split:phrasing``)."""
    out: dict = {"per_split": {}, "per_phrasing": {}}
    for split in SPLITS:
        chosen = [o for r, o in zip(requests, outcomes, strict=True) if r["split"] == split]
        if chosen:
            out["per_split"][split] = {
                "right": sum(o["right"] for o in chosen) / len(chosen),
                "format": sum(o["format"] for o in chosen) / len(chosen),
                "n": len(chosen),
            }
    cells: dict[str, list[bool]] = {}
    for request, outcome in zip(requests, outcomes, strict=True):
        cells.setdefault(f"{request['split']}:{request['phrasing']}", []).append(outcome["right"])
    out["per_phrasing"] = {name: sum(oks) / len(oks) for name, oks in sorted(cells.items())}
    return out


def table(scores: dict[str, dict]) -> str:
    """Right (and well-formed) shares per split as a Markdown table, one column per model."""
    names = list(scores)
    lines = ["| split | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for split in SPLITS:
        cells = []
        for score in scores.values():
            s = score["per_split"].get(split)
            cells.append(
                "-" if s is None else f"{100 * s['right']:.0f} % ({100 * s['format']:.0f} %, n={s['n']})"
            )
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--every", type=int, default=6, help="ask every N-th training request (default 6)")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error(f"--every wants a whole number >= 1, got {args.every}")
    models = named_models(parser, args.model)
    from funaudiochat.drsr.prompts import function_calling_prompt
    from funaudiochat.training.demo.text_stages import greedy_replies

    corpus = args.run / "corpus"
    system = function_calling_prompt(json.loads((corpus / "tools.json").read_text(encoding="utf-8")))
    requests = tool_requests(corpus, args.every)
    scores = {}
    for name, folder in models.items():
        model, tokenizer = load_text_lm(folder)
        replies = greedy_replies(model, tokenizer, [r["question"] for r in requests], system)
        outcomes = [scored(r, reply) for r, reply in zip(requests, replies, strict=True)]
        examples = [
            {"question": r["question"], "expected": r["tool_call"], **o}
            for r, o in zip(requests, outcomes, strict=True)
            if not o["right"]
        ][:20]
        scores[name] = {"model": str(folder), **summary(requests, outcomes), "wrong_examples": examples}
    print(table(scores))
    write_results(args.out, scores)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
