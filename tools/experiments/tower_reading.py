"""Can the frozen text LLM read what the audio encoder hears? The base text LLM of a demo run answers the
held-out spoken questions (S2T, greedy, scored by key as ``tools/eval_spoken_qa.py`` does) with the
question's place in its text prompt taken by the tower's 5 Hz groups, read four ways:

- ``text``: the written question (the LLM's own accuracy: the ceiling);
- ``transcript``: the tower's greedy token-CTC transcript (repeats merged, blanks dropped) as text: a
  cascade of recogniser and LLM;
- ``tokens``: each group replaced by the input embedding of its greedy token-CTC class, a blank group by
  zeros (what a tower that outputs exactly the embeddings of the words it hears would give);
- ``groups``: the groups as they are (what the model's adapter passes on at its identity start);
- ``least_squares``: the groups through one linear map fit by least squares, on training questions, onto
  the embeddings of their CTC classes (zero for the blank): the best a linear adapter does untrained.

    python tools/experiments/tower_reading.py --run runs/demo [--tower FOLDER] [--limit 25] [--out FILE]

``--tower`` as in ``tower_hearing.py`` (default ``RUN/audio_encoder``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tower_hearing import load_tower  # noqa: E402

WAYS = ("text", "transcript", "tokens", "groups", "least_squares")


def heard_groups(encoder, head, group_size: int, audio: str):
    """``(groups [G, D], CTC classes [G])`` of one audio file (class 0 the blank, token i is i + 1)."""
    import torch
    from funaudiochat.tokenizer.audio import load_audio
    from funaudiochat.tokenizer.frontend import log_mel_spectrogram
    from funaudiochat.training.llm.audio_encoder import group_mean

    mel = log_mel_spectrogram(load_audio(audio, 16000))[None]
    with torch.no_grad():
        hidden, lengths = encoder(mel, torch.tensor([mel.shape[-1]]))
        grouped, groups = group_mean(hidden, lengths, group_size)
        grouped = grouped[0, : int(groups[0])].float()
        return grouped, head(grouped[None])[0].argmax(-1)


def token_embeddings(classes, table):
    """The embeddings of CTC classes ``[G]`` in ``table [V, D]``, zeros for the blank."""
    return table[(classes - 1).clamp(min=0)] * (classes > 0)[:, None].to(table.dtype)


def fit_least_squares(pairs, table, ridge: float = 1e-3):
    """``W [D, D]`` minimising ``|G W - T|^2 + ridge |W|^2`` over ``pairs`` of (groups, classes)."""
    import torch

    groups = torch.cat([g for g, _ in pairs])
    targets = torch.cat([token_embeddings(c, table) for _, c in pairs])
    eye = torch.eye(groups.shape[1])
    return torch.linalg.solve(groups.T @ groups + ridge * eye, groups.T @ targets)


class Reader:
    """Greedy answers of a causal LM to its text prompt with embeddings in the question's place."""

    def __init__(self, model, tokenizer):
        from funaudiochat.drsr.prompts import DEFAULT_S2T_PROMPT
        from funaudiochat.training.llm.text_lm import prompt_text

        marker = "<<QUESTION>>"
        before, after = prompt_text(tokenizer, marker, DEFAULT_S2T_PROMPT).split(marker)
        self.model, self.tokenizer = model, tokenizer
        self.before = tokenizer(before, add_special_tokens=False).input_ids
        self.after = tokenizer(after, add_special_tokens=False).input_ids

    def answer(self, question, max_new_tokens: int = 40) -> str:
        """``question``: text (the training prompt as it is) or embeddings ``[N, D]`` in its place."""
        import torch
        from funaudiochat.training.llm.text_lm import generate_answer, greedy_reply

        if isinstance(question, str):
            return generate_answer(self.model, self.tokenizer, question, max_new_tokens=max_new_tokens)
        embed = self.model.get_input_embeddings()
        with torch.no_grad():
            parts = (embed(torch.tensor(self.before)), question, embed(torch.tensor(self.after)))
            prompt = {"inputs_embeds": torch.cat(parts)[None]}
        return greedy_reply(self.model, self.tokenizer, prompt, max_new_tokens)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a demo run folder (speech, text_lm)")
    parser.add_argument("--tower", type=Path, help="tower folder (default RUN/audio_encoder)")
    parser.add_argument("--limit", type=int, default=25, help="held-out questions per task at most")
    parser.add_argument("--fit", type=int, default=60, help="training questions per task for least squares")
    parser.add_argument("--out", type=Path, help="write the results here (JSON)")
    args = parser.parse_args(argv)
    import torch
    from funaudiochat.chat.demo_eval import heldout_items, key_score
    from funaudiochat.training.demo.text_stages import QA_TASKS
    from funaudiochat.training.tokenizer import greedy_decode
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    text_lm = args.run / "text_lm" / "model"
    tower = args.tower or args.run / "audio_encoder"
    encoder, head, group_size = load_tower(tower, text_lm)
    model = AutoModelForCausalLM.from_pretrained(text_lm).eval()
    reader = Reader(model, AutoTokenizer.from_pretrained(text_lm))
    table = model.get_input_embeddings().weight.detach()

    fit = [i for i in heldout_items(args.run, args.fit, "train_a") if i.task in QA_TASKS]
    matrix = fit_least_squares([heard_groups(encoder, head, group_size, i.audio) for i in fit], table)
    items = [i for i in heldout_items(args.run, args.limit) if i.task in QA_TASKS]
    answers: dict[str, list[str]] = {way: [] for way in WAYS}
    for item in items:
        grouped, classes = heard_groups(encoder, head, group_size, item.audio)
        answers["text"].append(reader.answer(item.question))
        heard = [c - 1 for c in greedy_decode(classes.tolist())]
        answers["transcript"].append(reader.answer(reader.tokenizer.decode(heard)))
        answers["tokens"].append(reader.answer(token_embeddings(classes, table)))
        answers["groups"].append(reader.answer(grouped))
        answers["least_squares"].append(reader.answer(grouped @ matrix))
    results: dict = {"tower": str(tower), "fit_questions": len(fit)}
    for way in WAYS:
        results[way] = key_score(items, answers[way])
        print(f"{way}: {100 * results[way]['accuracy']:.1f} % (n={results[way]['n']})", flush=True)
    shown = enumerate(items[:12])
    results["examples"] = [{"question": i.question} | {w: answers[w][n] for w in WAYS} for n, i in shown]
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
