"""Official prompts, the function-calling prompt builder and the tool-call parser."""

from __future__ import annotations

import json

import pytest
from funaudiochat.drsr.prompts import (
    ASR_INSTRUCTION,
    DEFAULT_S2M_PROMPT,
    DEFAULT_S2T_PROMPT,
    SPOKEN_S2M_PROMPT,
    ToolCall,
    format_tool_call,
    function_calling_prompt,
    parse_tool_calls,
)
from funaudiochat.drsr.text_tokenizer import train_text_tokenizer
from hypothesis import given, settings
from hypothesis import strategies as st

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "查询天气",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string", "description": "地点", "default": "当前位置"}},
            "required": [],
        },
    },
}
TRIANGLE = {
    "name": "calculate_triangle_area",
    "description": "Area of a triangle",
    "parameters": {
        "type": "object",
        "properties": {"base": {"type": "number"}, "height": {"type": "number"}},
    },
}
MODEL_OUTPUT = (
    '<tool_call>\n{"name": "calculate_triangle_area", "arguments": {"base": 10, "height": 5}}\n'
    "</tool_call><|im_end|>"
)


def test_official_prompt_strings():
    assert DEFAULT_S2T_PROMPT == "You are asked to generate text tokens."
    assert DEFAULT_S2M_PROMPT == "You are asked to generate both text and speech tokens at the same time."
    assert SPOKEN_S2M_PROMPT.startswith(DEFAULT_S2M_PROMPT + " 你的名字是小云。")
    assert SPOKEN_S2M_PROMPT.endswith("会说四川话和粤语。")
    assert ASR_INSTRUCTION == "Please help me transcribe the audio."


def test_function_calling_prompt_layout():
    prompt = function_calling_prompt([WEATHER, TRIANGLE])
    tools_lines = json.dumps(WEATHER, ensure_ascii=False) + "\n" + json.dumps(TRIANGLE, ensure_ascii=False)
    assert prompt == (
        "You are asked to generate text tokens.\n"
        "# Tools\n\n"
        "You may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        "<tools>\n" + tools_lines + "\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def test_function_calling_prompt_holds_each_tool_on_one_line():
    prompt = function_calling_prompt([WEATHER, TRIANGLE])
    block = prompt.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0]
    assert [json.loads(line) for line in block.split("\n")] == [WEATHER, TRIANGLE]
    assert "查询天气" in block  # not \u-escaped
    assert function_calling_prompt([TRIANGLE], base_prompt=DEFAULT_S2M_PROMPT).startswith(
        DEFAULT_S2M_PROMPT + "\n"
    )


def test_function_calling_prompt_errors():
    with pytest.raises(ValueError, match="tools is empty"):
        function_calling_prompt([])
    with pytest.raises(ValueError, match="tool 1 has no name"):
        function_calling_prompt([WEATHER, {"type": "function", "function": {"description": "no name"}}])
    with pytest.raises(ValueError, match="tool 0 .*not JSON-serialisable"):
        function_calling_prompt([{"name": "f", "parameters": {1, 2}}])


def test_parse_model_style_output():
    assert parse_tool_calls(MODEL_OUTPUT) == [
        ToolCall(name="calculate_triangle_area", arguments={"base": 10, "height": 5})
    ]


def test_parse_several_calls_with_surrounding_text():
    text = (
        "Let me check.\n"
        + format_tool_call("get_weather", {"location": "杭州"})
        + "\n"
        + '<tool_call>{"name": "check_battery"}</tool_call>'
        + '<tool_call>\n{"name": "f", "arguments": "{\\"x\\": [1, 2]}"}\n</tool_call>'
    )
    assert parse_tool_calls(text) == [
        ToolCall("get_weather", {"location": "杭州"}),
        ToolCall("check_battery", {}),
        ToolCall("f", {"x": [1, 2]}),
    ]
    assert parse_tool_calls("The area is 25.") == []


def test_parse_survives_decode_with_skip_special_tokens():
    tokenizer = train_text_tokenizer([MODEL_OUTPUT, "The area is 25."] * 5, vocab_size=300)
    decoded = tokenizer.decode(tokenizer.encode(MODEL_OUTPUT), skip_special_tokens=True)
    assert decoded == MODEL_OUTPUT.removesuffix("<|im_end|>")
    assert parse_tool_calls(decoded)[0].arguments == {"base": 10, "height": 5}


@pytest.mark.parametrize(
    "text, message",
    [
        ('<tool_call>\n{"name": "f", "arguments": {"x": 1}\n</tool_call>', "tool call 1 .*malformed JSON"),
        ('<tool_call>\n{"name": "f"}', "has no closing </tool_call>"),
        ('<tool_call>\n{"name": "f"} trailing\n</tool_call>', "unexpected text after the JSON object"),
        ("<tool_call>\n[1, 2]\n</tool_call>", "expected a JSON object, got list"),
        ('<tool_call>\n{"arguments": {}}\n</tool_call>', "missing or empty string 'name'"),
        ('<tool_call>\n{"name": "f", "arguments": [1]}\n</tool_call>', "'arguments' must be a JSON object"),
        (
            '<tool_call>\n{"name": "f", "arguments": "{oops"}\n</tool_call>',
            "'arguments' is a string but not JSON",
        ),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_tool_calls(format_tool_call("ok", {}) + text)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(
    calls=st.lists(
        st.tuples(
            st.text(min_size=1, max_size=20), st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=4)
        ),
        max_size=3,
    ),
    filler=st.sampled_from(["", "\n", "Sure. ", "<|im_end|>"]),
)
def test_format_parse_round_trip(calls, filler):
    text = filler.join(format_tool_call(name, arguments) for name, arguments in calls) + filler
    assert parse_tool_calls(text) == [ToolCall(name, arguments) for name, arguments in calls]
