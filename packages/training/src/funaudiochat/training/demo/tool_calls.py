"""The "tool" task of the demo corpus: spoken requests answered by a function call, and the functions'
OpenAI-style schemas (``TOOLS``).

    >>> timer = tool_families()[0]
    >>> timer.templates[0].fill(timer.contents[4])
    ('Set a timer for five minutes.', 'Okay, setting a timer for five minutes.')
    >>> dict(timer.contents[4].tool_call)
    {'name': 'set_timer', 'arguments': {'minutes': 5}}

Each pair carries its ``tool_call`` (``{"name", "arguments"}``, arguments as a JSON object) and, as its text
answer, a short spoken confirmation that names the argument ("Okay, setting a timer for five minutes.",
"Let me check the weather in Paris."): what the model says while it makes the call. Content ids:
``timer:5``, ``weather:new_york``.
"""

from __future__ import annotations

from .family import Content, Family, Template
from .number_words import number_to_words

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "set_timer",
            "description": "Start a countdown timer that rings after the given number of minutes.",
            "parameters": {
                "type": "object",
                "properties": {
                    "minutes": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "Length of the timer in minutes.",
                    }
                },
                "required": ["minutes"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "Name of the city, e.g. Paris."}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    },
]
TIMER_MINUTES = (*range(1, 21), 25, 30, 40, 45, 50, 60, 90)
CITIES = (
    "London",
    "Paris",
    "Tokyo",
    "Berlin",
    "Madrid",
    "Rome",
    "Beijing",
    "Sydney",
    "Cairo",
    "Moscow",
    "New York",
    "Chicago",
    "Toronto",
    "Mumbai",
    "Seoul",
    "Lisbon",
)

TIMER_ANSWER = "Okay, setting a timer for {minutes}."
TIMER = (
    Template("set_for", "set a timer for {minutes}.", TIMER_ANSWER),
    Template("start_timer", "start a {n} minute timer.", TIMER_ANSWER),
    Template("please_set", "please set a timer for {minutes}.", TIMER_ANSWER),
    Template("can_you_time", "can you time {minutes} for me?", TIMER_ANSWER),
    Template("remind_me", "remind me in {minutes}.", TIMER_ANSWER),
    Template("need_timer", "I need a timer for {minutes}.", TIMER_ANSWER),
    Template("timer_please", "timer for {minutes}, please.", TIMER_ANSWER),
    Template("wake_me", "wake me up in {minutes}.", TIMER_ANSWER),
)
WEATHER_ANSWER = "Let me check the weather in {city}."
WEATHER = (
    Template("what_is", "what is the weather in {city}?", WEATHER_ANSWER),
    Template("like", "what's the weather like in {city}?", WEATHER_ANSWER),
    Template("today", "how is the weather in {city} today?", WEATHER_ANSWER),
    Template("tell_me", "tell me the weather in {city}.", WEATHER_ANSWER),
    Template("raining", "is it raining in {city}?", WEATHER_ANSWER),
    Template("forecast", "what's the forecast for {city}?", WEATHER_ANSWER),
    Template("check", "check the weather in {city}, please.", WEATHER_ANSWER),
    Template("umbrella", "do I need an umbrella in {city}?", WEATHER_ANSWER),
    Template("warm", "is it warm in {city} right now?", WEATHER_ANSWER),
)


def _timer(minutes: int) -> Content:
    n = number_to_words(minutes)
    slots = {"n": n, "minutes": f"{n} minute" if minutes == 1 else f"{n} minutes"}
    return Content(
        f"timer:{minutes}", slots, tuple(n.split()), {"name": "set_timer", "arguments": {"minutes": minutes}}
    )


def _weather(city: str) -> Content:
    call = {"name": "get_weather", "arguments": {"city": city}}
    return Content(
        f"weather:{city.lower().replace(' ', '_')}", {"city": city}, tuple(city.lower().split()), call
    )


def tool_families() -> list[Family]:
    """``set_timer`` over ``TIMER_MINUTES`` and ``get_weather`` over ``CITIES``."""
    return [
        Family("tool", "timer", TIMER, tuple(_timer(m) for m in TIMER_MINUTES), per_content=3),
        Family("tool", "weather", WEATHER, tuple(_weather(c) for c in CITIES), per_content=4),
    ]
