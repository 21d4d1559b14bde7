"""Function calling end to end: the official function-calling prompt, a spoken request, S2T decoding, and
the tool call parsed from the model's text.

No pretrained model exists here, so a tiny model (its BPE tokenizer trained on the prompt text) is first
taught the answer to this one spoken request (a couple of hundred Adam steps on the text loss), then
decodes it from the audio with the official S2T settings (greedy text, SRH off).
"""

import pytest
import torch
from funaudiochat.drsr import (
    DecodingConfig,
    FunAudioChatConfig,
    FunAudioChatForConditionalGeneration,
    generate,
)
from funaudiochat.drsr.processing import FunAudioChatProcessor
from funaudiochat.drsr.prompts import format_tool_call, function_calling_prompt, parse_tool_calls
from funaudiochat.drsr.text_tokenizer import special_token_ids, train_text_tokenizer

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "calculate_triangle_area",
            "description": "Area of a triangle from its base and height.",
            "parameters": {
                "type": "object",
                "properties": {"base": {"type": "number"}, "height": {"type": "number"}},
                "required": ["base", "height"],
            },
        },
    }
]
CALL = format_tool_call("calculate_triangle_area", {"base": 10, "height": 5})


@pytest.mark.slow
def test_spoken_request_gives_a_parsed_tool_call(tmp_path, espeak):
    system = function_calling_prompt(TOOLS)
    tokenizer = train_text_tokenizer([system, CALL, "What is the area of a triangle?"], vocab_size=400)
    ids = special_token_ids(tokenizer)
    processor = FunAudioChatProcessor(tokenizer)
    wav = espeak("What is the area of a triangle with base ten and height five?", tmp_path / "ask.wav")
    messages = [{"role": "user", "content": [{"type": "audio", "audio": str(wav)}]}]
    prompt = processor.apply_chat_template(messages, system_prompt=system)
    inputs = processor(prompt, audio=[str(wav)])
    answer = tokenizer(CALL + "<|im_end|>", add_special_tokens=False, return_tensors="pt").input_ids

    config = FunAudioChatConfig.tiny(
        vocab_size=len(tokenizer),
        audio_token_index=ids.audio_token_index,
        text_overrides=dict(
            audio_bos_index=ids.audio_bos_index,
            audio_eos_index=ids.audio_eos_index,
            sil_index=ids.sil_index,
            eos_token_id=ids.im_end,
            pad_token_id=ids.pad,
            bos_token_id=ids.endoftext,
        ),
    )
    torch.manual_seed(0)
    model = FunAudioChatForConditionalGeneration(config)
    train = dict(inputs)
    train["input_ids"] = torch.cat([inputs["input_ids"], answer], dim=1)
    train["attention_mask"] = torch.ones_like(train["input_ids"])
    labels = torch.full_like(train["input_ids"], -100)
    labels[:, inputs["input_ids"].shape[1] :] = answer
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss = model(**train, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.01:
            break
    assert loss.item() < 0.05

    model.eval()
    out = generate(
        model,
        inputs,
        DecodingConfig(max_new_tokens=answer.shape[1] + 4, disable_speech=True, force_text_abos=False),
    )
    text = tokenizer.decode(out.sequences[0, out.prompt_length :], skip_special_tokens=False)
    calls = parse_tool_calls(text)
    assert len(calls) == 1
    assert calls[0].name == "calculate_triangle_area"
    assert calls[0].arguments == {"base": 10, "height": 5}
