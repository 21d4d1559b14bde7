"""Practice phrasings: questions the text LLM learns from that the corpus never asks.

A pretrained LLM has met each kind of question in many more wordings than the corpus' five to ten
templates a family, which is what lets it read a new one. The demo model's text LLM learns each family
from its training templates alone, and reads a held-out phrasing only now and then (61-79 % over four
runs, each phrasing near 0 or 100 %; ``docs/experiments/demo_model/README.md``). The ``text_lm_copy``
stage therefore also learns practice phrasings (``text_lm_copy_practice``), for the families of the
compare, fact and instruction tasks (arithmetic has its own, ``arithmetic.framed_templates``):

- ``EXTRA``: more templates per family, in the family's slots and answer style;
- ``WRAPS``: a lead-in or a tail around a question ("quick question: ...", "... Thanks."; ``{Q}``: the
  question starting a sentence), so the answer rests on the question's words, not on its first ones.

Nothing here is a held-out phrasing: ``practice_templates`` wraps only training templates and extras,
and leaves out any practice question that holds a held-out template's question (its words in order).

    >>> from funaudiochat.training.demo.facts import fact_families
    >>> colour = fact_families()[0]
    >>> extras, wrapped = practice_templates(colour, frozenset({"colour.name_colour"}))
    >>> extras[0].question, wrapped[0].question
    ('what colour do you think {thing} is?', 'hey, what colour is {thing}?')
"""

from __future__ import annotations

import re

from .family import Family, Template, sentence, words_of

WRAPS = (
    "hey, {q}",
    "okay, {q}",
    "quick question: {q}",
    "I have a question. {Q}",
    "so, {q}",
    "excuse me, {q}",
    "let me ask you something. {Q}",
    "one more for you: {q}",
    "{q} Thanks.",
    "{q} Please.",
    "{q} Do you know?",
    "{q} I would like to know.",
)

_MORE = "{verdict}, {a} is {more_less} than {b}."
_LESS = "{verdict}, {a} is {less_more} than {b}."
EXTRA: dict[str, tuple[Template, ...]] = {
    "more": (
        Template("higher", "is {a} higher than {b}?", "{verdict}, {a} is {lower_higher} than {b}."),
        Template("above", "is {a} above {b}?", _MORE),
        Template(
            "isnt_it", "{a} is bigger than {b}, isn't it?", "{verdict}, {a} is {bigger_smaller} than {b}."
        ),
        Template("would_you_call", "would you call {a} more than {b}?", _MORE),
        Template(
            "the_number", "is the number {a} greater than {b}?", "{verdict}, {a} is {greater_less} than {b}."
        ),
        Template("am_i_right", "am I right that {a} is more than {b}?", _MORE),
        Template(
            "check", "check for me: is {a} bigger than {b}?", "{verdict}, {a} is {bigger_smaller} than {b}."
        ),
    ),
    "less": (
        Template("below", "is {a} below {b}?", _LESS),
        Template("fewer", "is {a} fewer than {b}?", _LESS),
        Template(
            "isnt_it", "{a} is smaller than {b}, isn't it?", "{verdict}, {a} is {smaller_bigger} than {b}."
        ),
        Template("would_you_call", "would you call {a} less than {b}?", _LESS),
        Template(
            "the_number", "is the number {a} lower than {b}?", "{verdict}, {a} is {lower_higher} than {b}."
        ),
        Template("am_i_right", "am I right that {a} is less than {b}?", _LESS),
        Template(
            "check", "check for me: is {a} smaller than {b}?", "{verdict}, {a} is {smaller_bigger} than {b}."
        ),
    ),
    "bigger": (
        Template("out_of", "out of {a} and {b}, which is bigger?", "{max} is bigger."),
        Template("which_of", "which of {a} and {b} is larger?", "{max} is larger."),
        Template("pick", "pick the bigger one: {a} or {b}.", "{max} is bigger."),
        Template("between", "between {a} and {b}, which is greater?", "{max} is greater."),
        Template("larger_of", "what is the larger of {a} and {b}?", "{max} is the larger one."),
        Template("colon_more", "{a} or {b}: which is more?", "{max} is more."),
    ),
    "smaller": (
        Template("out_of", "out of {a} and {b}, which is smaller?", "{min} is smaller."),
        Template("which_of", "which of {a} and {b} is less?", "{min} is less."),
        Template("pick", "pick the smaller one: {a} or {b}.", "{min} is smaller."),
        Template("between", "between {a} and {b}, which is lower?", "{min} is lower."),
        Template("smaller_of", "what is the smaller of {a} and {b}?", "{min} is the smaller one."),
        Template("colon_less", "{a} or {b}: which is less?", "{min} is less."),
    ),
    "colour": (
        Template("think", "what colour do you think {thing} is?", "{thing} is {colour}."),
        Template("is_what", "{thing} is what colour?", "{thing} is {colour}."),
        Template("say_colour", "say the colour of {thing}.", "{thing} is {colour}."),
        Template("can_you_tell", "can you tell me the colour of {thing}?", "{thing} is {colour}."),
        Template("have", "which colour does {thing} have?", "{thing} is {colour}."),
        Template("want_to_know", "I want to know the colour of {thing}.", "{thing} is {colour}."),
    ),
    "sound": (
        Template("sound_like", "what does {a_animal} sound like?", "{a_animal} says {sound}."),
        Template("makes_what", "{a_animal} makes what sound?", "{a_animal} says {sound}."),
        Template("sound_of", "what is the sound of {a_animal}?", "{a_animal} says {sound}."),
        Template("noise_tell", "tell me the noise {a_animal} makes.", "{a_animal} says {sound}."),
        Template("the_noise", "which noise does the {animal} make?", "The {animal} says {sound}."),
        Template("hear", "what do you hear from {a_animal}?", "{a_animal} says {sound}."),
    ),
    "animal": (
        Template("who_goes", "who goes {sound}?", "{a_animal} goes {sound}."),
        Template("name_it", "name the animal that says {sound}.", "{a_animal} says {sound}."),
        Template("which_is_that", "{sound}! which animal is that?", "That is {a_animal}."),
        Template("tell_me", "tell me which animal says {sound}.", "{a_animal} says {sound}."),
        Template("makes", "which animal makes a {sound} sound?", "{a_animal} says {sound}."),
        Template("do_you_know", "do you know who says {sound}?", "{a_animal} says {sound}."),
    ),
    "opposite": (
        Template("word_is", "what word is the opposite of {word}?", "The opposite of {word} is {opposite}."),
        Template("name", "name the opposite of {word}.", "The opposite of {word} is {opposite}."),
        Template("is_what", "the opposite of {word} is what?", "The opposite of {word} is {opposite}."),
        Template(
            "can_you_tell", "can you tell me the opposite of {word}?", "The opposite of {word} is {opposite}."
        ),
        Template("its_opposite", "what is {word}'s opposite?", "The opposite of {word} is {opposite}."),
        Template("need", "I need the opposite of {word}.", "The opposite of {word} is {opposite}."),
    ),
    "day_after": (
        Template("is_after", "which day is after {day}?", "{next} comes after {day}."),
        Template("name", "name the day after {day}.", "The day after {day} is {next}."),
        Template("is_which", "the day after {day} is which day?", "The day after {day} is {next}."),
        Template("after_comes", "after {day}, which day comes?", "{next} comes after {day}."),
        Template("tell_me", "tell me the day that comes after {day}.", "{next} comes after {day}."),
        Template("do_you_know", "do you know what day comes after {day}?", "{next} comes after {day}."),
    ),
    "day_before": (
        Template("is_before", "which day is before {day}?", "{previous} comes before {day}."),
        Template("name", "name the day before {day}.", "The day before {day} is {previous}."),
        Template("is_which", "the day before {day} is which day?", "The day before {day} is {previous}."),
        Template("before_comes", "before {day}, which day comes?", "{previous} comes before {day}."),
        Template("tell_me", "tell me the day that comes before {day}.", "{previous} comes before {day}."),
        Template("do_you_know", "do you know what day comes before {day}?", "{previous} comes before {day}."),
    ),
    "month_after": (
        Template("is_after", "which month is after {month}?", "{next} comes after {month}."),
        Template("name", "name the month after {month}.", "The month after {month} is {next}."),
        Template("is_which", "the month after {month} is which month?", "The month after {month} is {next}."),
        Template("after_comes", "after {month}, which month comes?", "{next} comes after {month}."),
        Template("tell_me", "tell me the month that comes after {month}.", "{next} comes after {month}."),
        Template("do_you_know", "do you know what month comes after {month}?", "{next} comes after {month}."),
    ),
    "month_before": (
        Template("is_before", "which month is before {month}?", "{previous} comes before {month}."),
        Template("name", "name the month before {month}.", "The month before {month} is {previous}."),
        Template(
            "is_which", "the month before {month} is which month?", "The month before {month} is {previous}."
        ),
        Template("before_comes", "before {month}, which month comes?", "{previous} comes before {month}."),
        Template(
            "tell_me", "tell me the month that comes before {month}.", "{previous} comes before {month}."
        ),
        Template(
            "do_you_know", "do you know what month comes before {month}?", "{previous} comes before {month}."
        ),
    ),
    "legs": (
        Template("got", "how many legs has {a_animal} got?", "{a_animal} has {legs} legs."),
        Template("has_how_many", "{a_animal} has how many legs?", "{a_animal} has {legs} legs."),
        Template("what_number", "what number of legs does {a_animal} have?", "{a_animal} has {legs} legs."),
        Template("can_you_count", "can you count the legs on {a_animal}?", "{a_animal} has {legs} legs."),
        Template("do_you_know", "do you know how many legs {a_animal} has?", "{a_animal} has {legs} legs."),
        Template("stand_on", "on how many legs does {a_animal} stand?", "{a_animal} stands on {legs} legs."),
    ),
    "count_up": (
        Template("up_to", "count up to {end} from {start}.", "{sequence}."),
        Template("numbers", "say the numbers {start} to {end}.", "{sequence}."),
        Template("could_you", "could you count from {start} up to {end}?", "{sequence}."),
        Template("i_want", "I want you to count from {start} to {end}.", "{sequence}."),
        Template("lets", "let's count from {start} to {end}.", "{sequence}."),
        Template("all_numbers", "give me all the numbers from {start} to {end}.", "{sequence}."),
    ),
    "count_down": (
        Template("down_to", "count down to {end} from {start}.", "{sequence}."),
        Template("backwards", "say the numbers backwards from {start} to {end}.", "{sequence}."),
        Template("lets", "let's count down from {start} to {end}.", "{sequence}."),
        Template("i_want", "I want you to count down from {start} to {end}.", "{sequence}."),
        Template("from_down", "count from {start} down to {end}.", "{sequence}."),
        Template("could_you", "could you count down from {start} to {end}?", "{sequence}."),
    ),
    "say": (
        Template("just", "just say {phrase}.", "{phrase}!"),
        Template("would_you", "would you say {phrase}?", "{phrase}!"),
        Template("the_words", "say the words {phrase}.", "{phrase}!"),
        Template("go_on", "go on, say {phrase}.", "{phrase}!"),
        Template("let_me_hear", "let me hear you say {phrase}.", "{phrase}!"),
        Template("now", "now say {phrase}.", "{phrase}!"),
    ),
    "spell": (
        Template("out", "spell out {word}.", "{letters}."),
        Template("the_word", "spell the word {word}.", "{letters}."),
        Template("letter_by_letter", "how do you write {word}, letter by letter?", "{letters}."),
        Template("which_letters", "which letters make {word}?", "{letters}."),
        Template("say_letters", "say the letters of {word}.", "{letters}."),
        Template("could_you", "could you spell {word}?", "{letters}."),
    ),
}


def _words(question: str) -> tuple[str, ...]:
    """The words of a template's question, each slot as the word "slot"."""
    return words_of(re.sub(r"\{\w+\}", " slot ", question))


def _holds(question: str, held: list[tuple[str, ...]]) -> bool:
    """Whether ``question`` holds one of the ``held`` questions' words: as a run for one of three words or
    more, whole for a shorter one ("say {phrase}" is in half the family's training templates)."""
    words = _words(question)
    for h in held:
        if words == h or (len(h) >= 3 and any(words[i : i + len(h)] == h for i in range(len(words)))):
            return True
    return False


def practice_templates(
    family: Family, phrasings_out: frozenset[str]
) -> tuple[list[Template], list[Template]]:
    """(extras, wrapped) practice templates of ``family`` (both empty for a family without ``EXTRA``):
    its ``EXTRA`` templates, and each ``WRAPS`` around each of its training templates and extras.
    ``phrasings_out``: the family's held-out phrasing ids; a practice question that holds all the words of
    a held-out question, in order, is left out."""
    if family.name not in EXTRA:
        return [], []
    held_templates = [t for t in family.templates if family.phrasing_id(t) in phrasings_out]
    held = [_words(t.question) for t in held_templates]
    extras = [t for t in EXTRA[family.name] if not _holds(t.question, held)]
    trained = [t for t in family.templates if family.phrasing_id(t) not in phrasings_out]
    wrapped = []
    for w, wrap in enumerate(WRAPS):
        for template in (*trained, *extras):
            question = wrap.format(q=template.question, Q=sentence(template.question))
            if not _holds(question, held):
                wrapped.append(Template(f"wrap_{w}_{template.name}", question, template.answer))
    return extras, wrapped
