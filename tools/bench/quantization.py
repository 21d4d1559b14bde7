"""Weight-only int8 / int4 of the shared LLM and the SRH: weight memory, decoding speed, and agreement of
greedy text and speech tokens with the float model; then the official 8B's weights on paper.

    python tools/bench/quantization.py [--model FOLDER] [--steps 40] [--repeats 3] \
        [--json bench-results/quantization.json]

``--model`` (default: the shipped demo model, else ``runs/demo6/package``) is loaded three times: float32
as saved, ``quantize="int8"`` and ``quantize="int4"`` (``funaudiochat.drsr.quantization``). For each:

- bytes of the LLM's and the SRH's parameters and buffers (the tied speech-token table counted once);
- decoding speed: 5 Hz steps per second of ``generate`` (text and speech, ``--steps`` steps, the end tokens
  switched off), the bundled question, medians of ``--repeats`` interleaved rounds; float32 both with the
  fused decoding path (the default) and without it (what the quantized models run through);
- agreement with float32, greedy (text and speech, no repetition penalty), on the four bundled questions:
  the share of text tokens and of speech codes equal position by position, and the share of replies whose
  text is the same.

The paper table counts the official Fun-Audio-Chat-8B's parameters on the meta device (the config's
defaults are the official sizes) and gives the weights' size in bf16 and with the LLM and the SRH in int8
/ int4 (int4: a bf16 scale and offset per 32 weights, 0.625 bytes per weight), against 16 GB and 24 GB.
The spoken-QA accuracy with each is ``tools/eval_spoken_qa.py --quantize int8|int4``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
from _results import write_json  # tools/bench/_results.py, this folder
from funaudiochat.chat import Pipeline
from funaudiochat.chat.loaders import demo_model_folder
from funaudiochat.drsr import DecodingConfig, SamplingConfig, generate
from funaudiochat.drsr.quantization import quantizable_layers, quantize_weights, weight_bytes

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = sorted((ROOT / "examples" / "questions").glob("*.wav"))
GREEDY = SamplingConfig(do_sample=False, repetition_penalty=1.0)
GIB = 1024**3


def _prompt(pipe: Pipeline, audio: Path) -> dict:
    prompt = pipe.processor.apply_chat_template([{"role": "user", "content": [{"type": "audio"}]}])
    return pipe.processor(prompt, audio=[str(audio)])


def steps_per_second(model, inputs: dict, steps: int, fast: bool) -> float:
    config = DecodingConfig(max_new_tokens=steps, text=GREEDY, speech=GREEDY, fast_decode=fast)
    start = time.perf_counter()
    generate(model, inputs, config)
    return steps / (time.perf_counter() - start)


def greedy(model, inputs: dict, steps: int):
    config = DecodingConfig(max_new_tokens=steps, text=GREEDY, speech=GREEDY)
    out = generate(model, inputs, config)
    return out.sequences[0, inputs["input_ids"].shape[1] :], out.speech_ids[0]


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of positions of the longer of ``a`` and ``b`` where both hold the same token."""
    common, longest = min(len(a), len(b)), max(len(a), len(b))
    return float((a[:common] == b[:common]).sum()) / longest if longest else 1.0


def paper_table() -> list[dict]:
    """The official 8B's weight bytes in bf16 and with its LLM and SRH weight-only int8 / int4."""
    from funaudiochat.drsr import FunAudioChatConfig, FunAudioChatForConditionalGeneration

    with torch.device("meta"):
        model = FunAudioChatForConditionalGeneration(FunAudioChatConfig())
    quantizable = sum(layer.weight.numel() for _, _, layer in quantizable_layers(model))
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    rest = total - quantizable
    rows = []
    for scheme, per_weight in (("bf16", 2.0), ("int8", 1.0 + 2 / 4096), ("int4", 0.5 + 4 / 32)):
        gib = (quantizable * per_weight + rest * 2) / GIB
        rows.append(
            {
                "weights": scheme,
                "gib": round(gib, 2),
                "fits_16gb": gib < 16 * 1e9 / GIB,
                "fits_24gb": gib < 24 * 1e9 / GIB,
            }
        )
    return [{"params_total": total, "params_quantized": quantizable}, *rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a pipeline folder (default: the demo model)")
    parser.add_argument("--steps", type=int, default=40, help="5 Hz steps per timed reply")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default="bench-results/quantization.json")
    args = parser.parse_args()
    folder = args.model or demo_model_folder() or ROOT / "runs" / "demo6" / "package"
    pipe = Pipeline.from_pretrained(folder)
    float_model = pipe.model
    questions = [_prompt(pipe, q) for q in QUESTIONS]
    models = {"float32": float_model}
    for scheme in ("int8", "int4"):
        models[scheme] = copy.deepcopy(float_model)
        quantize_weights(models[scheme], scheme)

    # speed: the same prompt, the end tokens switched off before quantizing
    timed = {}
    for name in models:
        timed[name] = copy.deepcopy(float_model)
        with torch.no_grad():
            timed[name].language_model.lm_head.weight[pipe.processor.token_ids.im_end] = 0
            timed[name].audio_tower.embed_tokens.weight[float_model.config.audio_config.eos_token_id] = 0
        if name != "float32":
            quantize_weights(timed[name], name)
    schedules = [("float32", True), ("float32", False), ("int8", False), ("int4", False)]
    keys = ["float32", "float32 (plain path)", "int8", "int4"]
    speeds: dict[str, list[float]] = {key: [] for key in keys}
    for model in timed.values():
        steps_per_second(model, questions[0], 4, True)  # warm-up
    for _ in range(args.repeats):
        for (name, fast), key in zip(schedules, speeds, strict=True):
            speeds[key].append(steps_per_second(timed[name], questions[0], args.steps, fast))

    reference = [greedy(float_model, q, args.steps) for q in questions]
    rows = []
    for name, model in models.items():
        replies = [greedy(model, q, args.steps) for q in questions] if name != "float32" else reference
        pairs = list(zip(replies, reference, strict=True))
        rows.append(
            {
                "weights": name,
                "llm_mb": weight_bytes(model.language_model) / 1e6,
                "srh_mb": weight_bytes(model.audio_invert_tower) / 1e6,
                "steps_per_s": statistics.median(speeds[name]),
                "text_agreement": statistics.mean(agreement(r[0], f[0]) for r, f in pairs),
                "speech_agreement": statistics.mean(agreement(r[1], f[1]) for r, f in pairs),
                "same_text": statistics.mean(float(torch.equal(r[0], f[0])) for r, f in pairs),
            }
        )
    plain = statistics.median(speeds["float32 (plain path)"])
    paper = paper_table()

    print(f"{folder}, {torch.get_num_threads()} threads, {args.steps} steps, {len(questions)} questions")
    heads = ["weights", "LLM MB", "SRH MB", "steps/s", "text agr", "speech agr", "same text"]
    print(" ".join(f"{h:>10}" for h in heads))
    for r in rows:
        print(
            f"{r['weights']:>10} {r['llm_mb']:>10.2f} {r['srh_mb']:>10.2f} {r['steps_per_s']:>10.1f} "
            f"{r['text_agreement']:>10.2f} {r['speech_agreement']:>10.2f} {r['same_text']:>10.2f}"
        )
    print(f"float32 without the fused decoding path: {plain:.1f} steps/s")
    total, linear = paper[0]["params_total"] / 1e9, paper[0]["params_quantized"] / 1e9
    print(f"official 8B: {total:.2f} B parameters, {linear:.2f} B in the LLM's and SRH's linear layers")
    for r in paper[1:]:
        fits = f"fits 16 GB: {r['fits_16gb']}, 24 GB: {r['fits_24gb']}"
        print(f"  {r['weights']:>5}: {r['gib']:6.2f} GiB of weights; {fits}")
    write_json(
        args.json,
        {
            "args": vars(args),
            "model": str(folder),
            "rows": rows,
            "plain_float32_steps_per_s": plain,
            "paper": paper,
        },
    )


if __name__ == "__main__":
    main()
