"""Is the text knowledge kept? The final model's text replies and its base text LLM's to the written
questions of *every* held-out phrasing (``demo_eval.text_knowledge``): the evaluation's text figures
(``tools/eval_spoken_qa.py``) on all of them instead of ``--limit``'s sample, whose one question in 49 is
two points.

    python tools/experiments/text_knowledge.py --model runs/demo/package --run runs/demo [--out F]

``--weights runs/demo/core_cocktail/run/model`` answers with a stage's model instead of the package's (its
weights loaded into the package's pipeline, in float32): Core-Cocktail's LLM without training DPO after it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="pipeline folder (the package stage's)")
    parser.add_argument("--run", type=Path, required=True, help="the demo run folder (corpus, speech)")
    parser.add_argument("--base", type=Path, help="the base text LLM (default: the run's, as the evaluation)")
    parser.add_argument("--limit", type=int, help="at most this many held-out pairs per task (default: all)")
    parser.add_argument("--weights", type=Path, help="a stage's model folder to answer with")
    parser.add_argument("--out", type=Path, help="write the results here (JSON)")
    args = parser.parse_args()

    from funaudiochat.base.atomic import atomic_write_text
    from funaudiochat.chat import Pipeline
    from funaudiochat.chat.demo_eval import base_text_lm, heldout_items, text_knowledge

    start = time.perf_counter()
    base = args.base or base_text_lm(args.run)
    pipe = Pipeline.from_pretrained(args.model)
    if args.weights is not None:
        from funaudiochat.drsr import FunAudioChatForConditionalGeneration

        stage_model = FunAudioChatForConditionalGeneration.from_pretrained(str(args.weights))
        pipe.model.load_state_dict(stage_model.float().state_dict())
        pipe.clear_prefix_cache()
    results = text_knowledge(pipe, heldout_items(args.run, args.limit), base)
    for name in ("text_final", "text_base"):
        score = results[name]
        figures = f"{score['accuracy']:.1%} ± {score['se_by_phrasing']:.1%} of {score['n']}"
        print(f"{name}: {figures}", score["per_task"])
    seconds = time.perf_counter() - start
    results.update(model=str(args.model), weights=args.weights and str(args.weights), base=str(base))
    results.update(limit=args.limit, seconds=seconds)
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
