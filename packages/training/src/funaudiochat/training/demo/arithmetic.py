"""Families of the "arithmetic" and "compare" tasks: sums, differences and products of 0..20, yes/no
comparisons and "which is bigger / smaller" questions, every number in words.

    >>> family = arithmetic_families()[0]
    >>> family.templates[0].fill(family.contents[7 * 21 + 3])
    ('What is seven plus three?', 'Seven plus three is ten.')

Content ids: ``add:A:B``, ``sub:A:B`` (A >= B), ``mul:A:B``, ``more:A:B`` ("is A more than B"),
``less:A:B``, ``bigger:A:B`` and ``smaller:A:B`` ("which is bigger, A or B"), with A and B in digits.
"""

from __future__ import annotations

import random

from .family import Content, Family, Template
from .number_words import number_to_words

OPERANDS = range(0, 21)
COMPARE_ITEMS = 150  # content items per comparison family (half with A > B), drawn from the 420 pairs
OPERATIONS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b}

ADD = (
    Template("what_is", "what is {a} plus {b}?", "{a} plus {b} is {result}."),
    Template("how_much_and", "how much is {a} and {b}?", "{a} and {b} make {result}."),
    Template("add_and", "add {a} and {b}.", "{a} plus {b} is {result}."),
    Template("add_to", "add {b} to {a}.", "{a} plus {b} is {result}."),
    Template("sum_of", "what is the sum of {a} and {b}?", "The sum of {a} and {b} is {result}."),
    Template("equals_what", "{a} plus {b} equals what?", "{a} plus {b} equals {result}."),
    Template("get_when_adding", "what do you get when you add {a} and {b}?", "You get {result}."),
    Template("can_you_add", "can you add {a} and {b} for me?", "{a} plus {b} is {result}."),
    Template("bare", "{a} plus {b}?", "{a} plus {b} is {result}."),
    Template("together", "what do {a} and {b} make together?", "{a} and {b} make {result}."),
)
SUB = (
    Template("what_is", "what is {a} minus {b}?", "{a} minus {b} is {result}."),
    Template("take_away", "what is {a} take away {b}?", "{a} take away {b} is {result}."),
    Template("subtract_from", "subtract {b} from {a}.", "{a} minus {b} is {result}."),
    Template("take_from", "what do you get if you take {b} from {a}?", "You get {result}."),
    Template("how_much", "how much is {a} minus {b}?", "{a} minus {b} is {result}."),
    Template("difference", "what is the difference between {a} and {b}?", "The difference is {result}."),
    Template("equals_what", "{a} minus {b} equals what?", "{a} minus {b} equals {result}."),
    Template("left_over", "if you have {a} and take away {b}, how many are left?", "You have {result} left."),
    Template("bare", "{a} minus {b}?", "{a} minus {b} is {result}."),
)
MUL = (
    Template("what_is", "what is {a} times {b}?", "{a} times {b} is {result}."),
    Template("bare", "{a} times {b}?", "{a} times {b} is {result}."),
    Template("multiply_by", "multiply {a} by {b}.", "{a} times {b} is {result}."),
    Template("multiplied_by", "what is {a} multiplied by {b}?", "{a} multiplied by {b} is {result}."),
    Template("how_much", "how much is {a} times {b}?", "{a} times {b} is {result}."),
    Template("product", "what is the product of {a} and {b}?", "The product of {a} and {b} is {result}."),
    Template("get_when_multiplying", "what do you get when you multiply {a} by {b}?", "You get {result}."),
    Template("lots_of", "what are {a} lots of {b}?", "{a} lots of {b} make {result}."),
    Template("equals_what", "{a} times {b} equals what?", "{a} times {b} equals {result}."),
)

MORE = (
    Template("is_more", "is {a} more than {b}?", "{verdict}, {a} is {more_less} than {b}."),
    Template("is_bigger", "is {a} bigger than {b}?", "{verdict}, {a} is {bigger_smaller} than {b}."),
    Template("is_greater", "is {a} greater than {b}?", "{verdict}, {a} is {greater_less} than {b}."),
    Template(
        "larger_number", "is {a} a larger number than {b}?", "{verdict}, {a} is {bigger_smaller} than {b}."
    ),
    Template("right", "{a} is more than {b}, right?", "{verdict}, {a} is {more_less} than {b}."),
    Template(
        "would_you_say",
        "would you say {a} is bigger than {b}?",
        "{verdict}, {a} is {bigger_smaller} than {b}.",
    ),
    Template("tell_me", "tell me, is {a} more than {b}?", "{verdict}, {a} is {more_less} than {b}."),
)
LESS = (
    Template("is_less", "is {a} less than {b}?", "{verdict}, {a} is {less_more} than {b}."),
    Template("is_smaller", "is {a} smaller than {b}?", "{verdict}, {a} is {smaller_bigger} than {b}."),
    Template("is_lower", "is {a} lower than {b}?", "{verdict}, {a} is {lower_higher} than {b}."),
    Template(
        "smaller_number", "is {a} a smaller number than {b}?", "{verdict}, {a} is {smaller_bigger} than {b}."
    ),
    Template("right", "{a} is less than {b}, right?", "{verdict}, {a} is {less_more} than {b}."),
    Template(
        "would_you_say",
        "would you say {a} is smaller than {b}?",
        "{verdict}, {a} is {smaller_bigger} than {b}.",
    ),
    Template("tell_me", "tell me, is {a} less than {b}?", "{verdict}, {a} is {less_more} than {b}."),
)
BIGGER = (
    Template("which", "which is bigger, {a} or {b}?", "{max} is bigger."),
    Template("which_number", "which number is bigger, {a} or {b}?", "{max} is bigger."),
    Template("which_more", "which is more, {a} or {b}?", "{max} is more."),
    Template("what_larger", "what is larger, {a} or {b}?", "{max} is larger."),
    Template("which_one", "{a} or {b}, which one is bigger?", "{max} is bigger."),
    Template("tell_me_greater", "tell me which is greater, {a} or {b}.", "{max} is greater."),
    Template("the_bigger_number", "which is the bigger number, {a} or {b}?", "{max} is the bigger number."),
)
SMALLER = (
    Template("which", "which is smaller, {a} or {b}?", "{min} is smaller."),
    Template("which_number", "which number is smaller, {a} or {b}?", "{min} is smaller."),
    Template("which_less", "which is less, {a} or {b}?", "{min} is less."),
    Template("which_lower", "which number is lower, {a} or {b}?", "{min} is lower."),
    Template("which_one", "{a} or {b}, which one is smaller?", "{min} is smaller."),
    Template("tell_me", "tell me which is smaller, {a} or {b}.", "{min} is smaller."),
    Template(
        "the_smaller_number", "which is the smaller number, {a} or {b}?", "{min} is the smaller number."
    ),
)


# The text LLM's extra arithmetic phrasings (``corpus.knowledge_pairs``): each frame around each way of
# saying an operation, so that which operation is asked rests on its word ("plus", "minus", "times"), not on
# the sentence around it. Combinations that spell a held-out phrasing are left out there.
FRAMES = (
    "what is {x}?",
    "how much is {x}?",
    "{x}?",
    "{x} equals what?",
    "tell me {x}.",
    "please work out {x}.",
    "can you tell me {x}?",
    "quick question, what is {x}?",
    "i would like to know {x}.",
    "calculate {x}.",
    "what does {x} come to?",
    "do you know {x}?",
)
OPERATION_WORDS = {
    "add": ("{a} plus {b}", "{a} added to {b}"),
    "sub": ("{a} minus {b}", "{a} take away {b}"),
    "mul": ("{a} times {b}", "{a} multiplied by {b}"),
}


def framed_templates(family: str) -> tuple[Template, ...]:
    """``FRAMES`` x ``OPERATION_WORDS[family]`` as templates; the answer repeats the operation's words."""
    templates = []
    for f, frame in enumerate(FRAMES):
        for w, words in enumerate(OPERATION_WORDS[family]):
            templates.append(
                Template(f"framed_{f}_{w}", frame.replace("{x}", words), f"{words} is {{result}}.")
            )
    return tuple(templates)


def _operation(name: str, a: int, b: int) -> Content:
    result = OPERATIONS[name](a, b)
    words = number_to_words(result)
    slots = {"a": number_to_words(a), "b": number_to_words(b), "result": words}
    return Content(f"{name}:{a}:{b}", slots, tuple(words.split()))


def arithmetic_families() -> list[Family]:
    """Addition and multiplication of every pair of 0..20, subtraction of every pair with A >= B."""
    pairs = [(a, b) for a in OPERANDS for b in OPERANDS]
    return [
        Family("arithmetic", "add", ADD, tuple(_operation("add", a, b) for a, b in pairs)),
        Family("arithmetic", "sub", SUB, tuple(_operation("sub", a, b) for a, b in pairs if a >= b)),
        Family("arithmetic", "mul", MUL, tuple(_operation("mul", a, b) for a, b in pairs)),
    ]


def _yes_no(family: str, a: int, b: int) -> Content:
    """``is A more than B`` (family "more") or ``is A less than B`` ("less"): yes or no, and why."""
    greater = a > b
    truth = greater if family == "more" else not greater
    slots = {
        "a": number_to_words(a),
        "b": number_to_words(b),
        "verdict": "yes" if truth else "no",
        "more_less": "more" if greater else "less",
        "less_more": "more" if greater else "less",
        "bigger_smaller": "bigger" if greater else "smaller",
        "smaller_bigger": "bigger" if greater else "smaller",
        "greater_less": "greater" if greater else "less",
        "lower_higher": "higher" if greater else "lower",
    }
    return Content(f"{family}:{a}:{b}", slots, (slots["verdict"],))


def _which(family: str, a: int, b: int) -> Content:
    """``which is bigger, A or B`` (family "bigger") or ``which is smaller`` ("smaller")."""
    slots = {
        "a": number_to_words(a),
        "b": number_to_words(b),
        "max": number_to_words(max(a, b)),
        "min": number_to_words(min(a, b)),
    }
    answer = slots["max"] if family == "bigger" else slots["min"]
    return Content(f"{family}:{a}:{b}", slots, tuple(answer.split()))


def _compare_pairs(family: str) -> list[tuple[int, int]]:
    """``COMPARE_ITEMS`` ordered pairs of distinct numbers, half with A > B, drawn the same way every run."""
    rng = random.Random(f"demo-corpus:contents:{family}")
    down = [(a, b) for a in OPERANDS for b in OPERANDS if a > b]
    up = [(a, b) for a in OPERANDS for b in OPERANDS if a < b]
    half = COMPARE_ITEMS // 2
    return sorted(rng.sample(down, half) + rng.sample(up, COMPARE_ITEMS - half))


def compare_families() -> list[Family]:
    """Yes/no "is A more / less than B" and "which is bigger / smaller, A or B" questions."""
    return [
        Family("compare", "more", MORE, tuple(_yes_no("more", a, b) for a, b in _compare_pairs("more"))),
        Family("compare", "less", LESS, tuple(_yes_no("less", a, b) for a, b in _compare_pairs("less"))),
        Family(
            "compare", "bigger", BIGGER, tuple(_which("bigger", a, b) for a, b in _compare_pairs("bigger"))
        ),
        Family(
            "compare",
            "smaller",
            SMALLER,
            tuple(_which("smaller", a, b) for a, b in _compare_pairs("smaller")),
        ),
    ]
