"""The "asr" task of the demo corpus: sentences the user speaks and the model writes down word for word.

    >>> colour = asr_families()[0]
    >>> colour.templates[0].fill(colour.contents[0])
    ('My favourite colour is black.', 'My favourite colour is black.')

The question is the sentence to speak and the answer is the same sentence (the instruction "Please help me
transcribe the audio." is added by the training pipeline, it is not spoken). The key is every word of the
sentence. The sentences reuse the corpus vocabulary (colours, animals, numbers, days, months, cities) but
state no fact that another task asks about (no colours of things, no animal sounds), so a held-out fact
is not heard in a transcript. Content ids are the slot values: ``asr_count:three:cows``,
``asr_trip:paris:monday``.
"""

from __future__ import annotations

import itertools
import random

from .facts import COLOURS, DAYS, MONTHS
from .family import Content, Family, Template
from .number_words import number_to_words
from .tool_calls import CITIES

SAMPLED_ITEMS = 60  # content items of each family whose slot combinations are too many to use all
ANIMAL_PLURALS = (
    ("cow", "cows"),
    ("dog", "dogs"),
    ("cat", "cats"),
    ("duck", "ducks"),
    ("sheep", "sheep"),
    ("pig", "pigs"),
    ("horse", "horses"),
    ("mouse", "mice"),
    ("frog", "frogs"),
    ("hen", "hens"),
    ("bee", "bees"),
    ("owl", "owls"),
)
FEELINGS = (
    "happy",
    "sad",
    "hungry",
    "sleepy",
    "tired",
    "quiet",
    "loud",
    "big",
    "small",
    "fast",
    "slow",
    "clean",
)
WEATHER_WORDS = ("hot", "cold", "sunny", "rainy", "windy", "cloudy", "warm", "wet", "dry")


def _same(name: str, text: str) -> Template:
    """A transcription template: the answer is the question."""
    return Template(name, text, text)


COLOUR = (
    _same("favourite", "my favourite colour is {colour}."),
    _same("painted", "I painted my room {colour}."),
    _same("hat", "she wore a {colour} hat."),
    _same("ball", "the ball is {colour}."),
    _same("like", "I like the colour {colour}."),
)
COUNT = (
    _same("can_see", "I can see {count} {animals}."),
    _same("in_field", "there are {count} {animals} in the field."),
    _same("at_home", "we have {count} {animals} at home."),
    _same("uncle", "my uncle has {count} {animals}."),
    _same("counted", "I counted {count} {animals} today."),
)
TRIP = (
    _same("fly", "we fly to {city} on {day}."),
    _same("will_be", "on {day} I will be in {city}."),
    _same("train", "the train to {city} leaves on {day}."),
    _same("call", "I will call you from {city} on {day}."),
    _same("visits", "my sister visits {city} every {day}."),
)
MONTH = (
    _same("birthday", "my birthday is in {month}."),
    _same("school", "school starts in {month}."),
    _same("moved", "we moved house in {month}."),
    _same("garden", "the garden looks lovely in {month}."),
    _same("see_you", "I will see you again in {month}."),
)
PET = (
    _same("very", "the {animal} is very {feeling}."),
    _same("looks", "my {animal} looks {feeling} today."),
    _same("so", "that {animal} is so {feeling}."),
    _same("think", "I think the {animal} is {feeling}."),
    _same("seems", "the little {animal} seems {feeling}."),
)
WEATHER = (
    _same("today", "it is {weather} in {city} today."),
    _same("weather_in", "the weather in {city} is {weather}."),
    _same("yesterday", "yesterday it was {weather} in {city}."),
    _same("this_week", "they say {city} will be {weather} this week."),
    _same("last_summer", "last summer {city} was very {weather}."),
)
DAY = (
    _same("see_you", "see you on {day}."),
    _same("shop", "the shop is closed on {day}."),
    _same("football", "I play football on {day}."),
    _same("lesson", "my piano lesson is on {day}."),
    _same("swimming", "we go swimming every {day}."),
)


def _slug(text: str) -> str:
    return text.lower().replace(" ", "_")


def _contents(family: str, **choices: tuple[str, ...]) -> tuple[Content, ...]:
    """Every combination of the slot ``choices`` (or ``SAMPLED_ITEMS`` of them, drawn the same way every
    run), with ids ``family:value:value``."""
    combos = list(itertools.product(*choices.values()))
    if len(combos) > SAMPLED_ITEMS:
        combos = sorted(random.Random(f"demo-corpus:contents:{family}").sample(combos, SAMPLED_ITEMS))
    return tuple(
        Content(":".join([family, *map(_slug, combo)]), dict(zip(choices, combo, strict=True)))
        for combo in combos
    )


def _numbers(first: int, last: int) -> tuple[str, ...]:
    return tuple(number_to_words(n) for n in range(first, last + 1))


def asr_families() -> list[Family]:
    """Seven families of transcription sentences (colours, counted animals, trips, months, pets, weather in
    a city, days), a few hundred sentences in all."""
    plurals = tuple(plural for _, plural in ANIMAL_PLURALS)
    animals = tuple(animal for animal, _ in ANIMAL_PLURALS)
    return [
        Family("asr", "asr_colour", COLOUR, _contents("asr_colour", colour=COLOURS), per_content=3),
        Family("asr", "asr_count", COUNT, _contents("asr_count", count=_numbers(2, 12), animals=plurals)),
        Family("asr", "asr_trip", TRIP, _contents("asr_trip", city=CITIES, day=DAYS)),
        Family("asr", "asr_month", MONTH, _contents("asr_month", month=MONTHS), per_content=3),
        Family("asr", "asr_pet", PET, _contents("asr_pet", animal=animals, feeling=FEELINGS)),
        Family("asr", "asr_weather", WEATHER, _contents("asr_weather", city=CITIES, weather=WEATHER_WORDS)),
        Family("asr", "asr_day", DAY, _contents("asr_day", day=DAYS), per_content=3),
    ]
