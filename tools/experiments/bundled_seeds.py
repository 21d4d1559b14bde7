"""How often the independent recogniser hears each bundled spoken answer over several speech seeds.

The end-to-end test (``tests/chat/test_demo_model.py``) and ``tools/demo.sh`` ask the bundled questions
(``examples/questions``) with speech seed 0: one draw of the sampled speech. This asks them with seeds
``0 .. --seeds - 1`` and counts, per question, the seeds whose spoken answer holds the expected words as
the recogniser hears it, so that two models are compared on their speech and not on one draw.

    python tools/experiments/bundled_seeds.py \\
        --model shipped=packages/chat/src/funaudiochat/chat/demo_model \\
        --model new=runs/demo/package --seeds 8 --out FILE
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

QUESTIONS = Path(__file__).resolve().parents[2] / "examples" / "questions"


def heard_per_seed(folder: Path, seeds: int, recognizer) -> dict[str, list[bool]]:
    """For the pipeline in ``folder``: per bundled question (its first key word), whether each seed's
    spoken answer was heard holding the key by ``recognizer`` (``demo_eval.bundled_recognizer``)."""
    from funaudiochat.chat import Pipeline
    from funaudiochat.chat.demo_eval import bundled_replies
    from funaudiochat.training.demo.corpus import contains_key

    pipe = Pipeline.from_pretrained(folder)
    heard: dict[str, list[bool]] = {}
    for seed in range(seeds):
        items, _, said = bundled_replies(pipe, QUESTIONS, seed=seed, recognizer=recognizer)
        for item, words in zip(items, said, strict=True):
            heard.setdefault(item["key"][0], []).append(contains_key(words, item["key"]))
    return heard


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="NAME=FOLDER, a pipeline folder")
    parser.add_argument("--seeds", type=int, default=8, help="speech seeds 0 .. N-1")
    parser.add_argument("--out", type=Path, help="JSON of the counts and each seed's outcome")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    models = {}
    for spec in args.model:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not Path(folder).is_dir():
            parser.error(f"--model takes NAME=FOLDER with an existing folder, got {spec!r}")
        models[name] = Path(folder)
    from funaudiochat.chat.demo_eval import bundled_recognizer

    recognizer = bundled_recognizer()
    results = {}
    for name, folder in models.items():
        heard = heard_per_seed(folder, args.seeds, recognizer)
        results[name] = {"model": str(folder), "heard": {k: sum(v) for k, v in heard.items()}, "seeds": heard}
        counts = ", ".join(f"{key} {sum(v)}/{args.seeds}" for key, v in heard.items())
        print(f"{name}: {counts}; seed 0 all heard: {all(v[0] for v in heard.values())}", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"seeds": args.seeds, "models": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
