"""Can a text LLM copy? Its greedy replies to the corpus' transcription sentences followed by the ASR
instruction (held-out sentences, and training ones), right when word for word the sentence; and its text
knowledge on the held-out phrasings of the question-answering tasks (scored by their keys), as the
``text_lm`` stage scores it.

    python tools/experiments/text_copy.py --model runs/demo/text_lm_copy/model --run runs/demo [--out F]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path


def unseen_words(corpus: Path) -> dict:
    """How many held-out transcription sentences say a word that no training-split text says."""
    from funaudiochat.training.demo.text_stages import corpus_pairs

    def words(text: str) -> set[str]:
        return set(re.findall(r"[a-z']+", text.lower()))

    every = ("arithmetic", "compare", "fact", "instruction", "tool", "asr")
    train = set().union(
        *(words(p["question"]) | words(p["answer"]) for p in corpus_pairs(corpus, ["train"], every))
    )
    held = corpus_pairs(corpus, ["heldout_phrasing", "heldout_content"], ("asr",))
    return {"sentences": len(held), "with_unseen_words": sum(bool(words(p["answer"]) - train) for p in held)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a causal LM folder (text_lm's export)")
    parser.add_argument("--run", type=Path, required=True, help="the demo run folder (its corpus)")
    parser.add_argument("--out", type=Path, help="write the results here (JSON)")
    args = parser.parse_args(argv)
    import torch
    from funaudiochat.training.demo.text_stages import copy_accuracy, corpus_pairs, text_accuracy
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    corpus = args.run / "corpus"
    result = {
        "model": str(args.model),
        "copied_heldout": copy_accuracy(
            model, tokenizer, corpus_pairs(corpus, ["heldout_phrasing", "heldout_content"], ("asr",))
        ),
        "copied_train": copy_accuracy(model, tokenizer, corpus_pairs(corpus, ["train"], ("asr",))),
        "knowledge_heldout_phrasing": text_accuracy(
            model, tokenizer, corpus_pairs(corpus, ["heldout_phrasing"])
        ),
        "unseen": unseen_words(corpus),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "model"}))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
