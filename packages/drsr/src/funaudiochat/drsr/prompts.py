"""The official system prompts, the function-calling prompt builder and the tool-call parser.

The prompt strings are data the checkpoint was trained on: they must stay byte-identical to the official
ones (``utils/constant.py`` of Fun-Audio-Chat). Function calling runs in speech-to-text mode (greedy text,
no speech). The model answers a call as ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``.

Example:
    >>> system = function_calling_prompt([{"type": "function", "function": {"name": "f", "parameters": {}}}])
    >>> parse_tool_calls('<tool_call>\\n{"name": "f", "arguments": {"x": 1}}\\n</tool_call><|im_end|>')
    [ToolCall(name='f', arguments={'x': 1})]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

TOOL_CALL_START = "<tool_call>"
TOOL_CALL_END = "</tool_call>"

# Speech in, text out.
DEFAULT_S2T_PROMPT = "You are asked to generate text tokens."
# Speech in, text and speech out at the same time.
DEFAULT_S2M_PROMPT = "You are asked to generate both text and speech tokens at the same time."
# S2M with the spoken persona "Xiaoyun" (a gentle girl from Hangzhou, short empathetic answers, can speak
# Sichuanese and Cantonese).
SPOKEN_S2M_PROMPT = (
    DEFAULT_S2M_PROMPT
    + " "
    + "你的名字是小云。你是一位来自杭州的温柔友善的女孩，声音甜美，举止亲切。你的回复语气自然友好，"
    "力求沟通简洁明了。你的回复简短，通常只有一到三句话，避免使用正式的称谓和重复的短语。"
    "你能用恰当的声音回复，遵循用户的指示，并能共情他们的情绪。你能用恰当的方言回复，会说四川话和粤语。"
)
# The user instruction for speech recognition.
ASR_INSTRUCTION = "Please help me transcribe the audio."

# Appended to DEFAULT_S2T_PROMPT; ``{tools}`` is one JSON schema per line.
TOOLS_BLOCK = (
    "\n# Tools\n\n"
    "You may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n"
    "<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n"
    "<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n'
    "</tool_call>"
)


@dataclass(frozen=True)
class ToolCall:
    """One function call parsed from the model's output."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


def _tool_name(tool: Any) -> str | None:
    if not isinstance(tool, dict):
        return None
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else tool.get("name")
    return name if isinstance(name, str) and name else None


def function_calling_prompt(tools: list[dict[str, Any]], base_prompt: str = DEFAULT_S2T_PROMPT) -> str:
    """The official function-calling system prompt: ``base_prompt`` + the ``# Tools`` block.

    ``tools`` are JSON schemas, OpenAI style (``{"type": "function", "function": {"name": ..., ...}}``,
    as in the official example) or bare (``{"name": ..., "parameters": ...}``); each is written as given,
    ``json.dumps(tool, ensure_ascii=False)`` on one line, in order.

    Raises:
        ValueError: ``tools`` empty, a tool that is not a dict with a non-empty string name, or a tool that
            is not JSON-serialisable.
    """
    if not tools:
        raise ValueError("tools is empty; give at least one tool schema (a dict with a function name)")
    lines = []
    for i, tool in enumerate(tools):
        if _tool_name(tool) is None:
            raise ValueError(
                f"tool {i} has no name: expected {{'type': 'function', 'function': {{'name': ...}}}} "
                f"or {{'name': ...}}, got {tool!r}"
            )
        try:
            lines.append(json.dumps(tool, ensure_ascii=False))
        except (TypeError, ValueError) as err:
            raise ValueError(f"tool {i} ({_tool_name(tool)}) is not JSON-serialisable: {err}") from err
    return base_prompt + TOOLS_BLOCK.format(tools="\n".join(lines))


def format_tool_call(name: str, arguments: dict[str, Any]) -> str:
    """The model-style text of one call: ``<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>``."""
    body = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"{TOOL_CALL_START}\n{body}\n{TOOL_CALL_END}"


def parse_tool_calls(text: str) -> list[ToolCall]:
    """Every ``<tool_call>{json}</tool_call>`` in ``text``, in order ([] when there is none).

    Text outside the tags (a preamble, a trailing ``<|im_end|>``) is ignored. The JSON object needs a
    string ``name``; ``arguments`` may be an object, a JSON string holding an object (OpenAI style), or
    absent (``{}``).

    Raises:
        ValueError: naming the call's index and position, for malformed JSON, a body that is not an object,
            a missing name, arguments that are not an object, text between the JSON and ``</tool_call>``,
            or a ``<tool_call>`` without its ``</tool_call>``. Malformed calls are errors rather than
            skipped entries, so that a caller never acts on a partial list of calls.
    """
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    cursor = 0
    while (start := text.find(TOOL_CALL_START, cursor)) != -1:
        index = len(calls)
        body_start = start + len(TOOL_CALL_START)
        while body_start < len(text) and text[body_start].isspace():
            body_start += 1
        where = f"tool call {index} (at character {start})"
        try:
            payload, body_end = decoder.raw_decode(text, body_start)
        except json.JSONDecodeError as err:
            snippet = text[body_start : body_start + 80]
            raise ValueError(f"{where}: malformed JSON ({err.msg}) in {snippet!r}") from err
        end = body_end
        while end < len(text) and text[end].isspace():
            end += 1
        if not text.startswith(TOOL_CALL_END, end):
            if text.find(TOOL_CALL_END, end) == -1:
                raise ValueError(f"{where}: {TOOL_CALL_START} has no closing {TOOL_CALL_END}")
            raise ValueError(f"{where}: unexpected text after the JSON object: {text[end : end + 40]!r}")
        calls.append(_to_tool_call(payload, where))
        cursor = end + len(TOOL_CALL_END)
    return calls


def _to_tool_call(payload: Any, where: str) -> ToolCall:
    if not isinstance(payload, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(payload).__name__}")
    name = payload.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: missing or empty string 'name' in {payload!r}")
    arguments = payload.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: 'arguments' is a string but not JSON ({err.msg})") from err
    if not isinstance(arguments, dict):
        raise ValueError(f"{where}: 'arguments' must be a JSON object, got {type(arguments).__name__}")
    return ToolCall(name=name, arguments=arguments)
