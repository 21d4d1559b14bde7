"""Families of the "fact" and "instruction" tasks, and the closed vocabulary they share with the rest of
the demo corpus (colours, animals, days, months).

    >>> colour = fact_families()[0]
    >>> colour.templates[0].fill(colour.contents[0])
    ('What colour is the sky?', 'The sky is blue.')

Facts: colours of things, animal sounds (both ways), opposites, the day or month after / before another,
legs of animals. Instructions: count up or down over a range, say a phrase, spell a short word.
Content ids: ``colour:sky``, ``sound:cow``, ``animal:moo``, ``opposite:hot``, ``day_after:monday``,
``month_before:may``, ``legs:spider``, ``count_up:1:5``, ``count_down:9:4``, ``say:good_night``,
``spell:cat``.
"""

from __future__ import annotations

from .family import Content, Family, Template, sentence
from .number_words import number_to_words

# thing (as spoken in "what colour is ..."), its colour
THING_COLOURS = (
    ("the sky", "blue"),
    ("grass", "green"),
    ("snow", "white"),
    ("a banana", "yellow"),
    ("coal", "black"),
    ("a strawberry", "red"),
    ("a carrot", "orange"),
    ("milk", "white"),
    ("a lemon", "yellow"),
    ("a frog", "green"),
    ("chocolate", "brown"),
    ("a ripe tomato", "red"),
    ("a rain cloud", "grey"),
    ("a crow", "black"),
    ("a pumpkin", "orange"),
    ("a plum", "purple"),
    ("the sea", "blue"),
    ("a polar bear", "white"),
    ("an elephant", "grey"),
    ("a flamingo", "pink"),
    ("mud", "brown"),
    ("a cherry", "red"),
)
COLOURS = tuple(sorted({colour for _, colour in THING_COLOURS}))
# animal, its article, the sound it makes (each sound belongs to one animal)
ANIMAL_SOUNDS = (
    ("cow", "a", "moo"),
    ("dog", "a", "woof"),
    ("cat", "a", "meow"),
    ("duck", "a", "quack"),
    ("sheep", "a", "baa"),
    ("pig", "a", "oink"),
    ("owl", "an", "hoot"),
    ("snake", "a", "hiss"),
    ("lion", "a", "roar"),
    ("horse", "a", "neigh"),
    ("bee", "a", "buzz"),
    ("mouse", "a", "squeak"),
    ("frog", "a", "ribbit"),
    ("hen", "a", "cluck"),
)
# pairs of opposites asked both ways, then words asked one way only (the other way has two answers)
OPPOSITES = (
    ("hot", "cold"),
    ("big", "small"),
    ("up", "down"),
    ("fast", "slow"),
    ("happy", "sad"),
    ("day", "night"),
    ("open", "closed"),
    ("wet", "dry"),
    ("full", "empty"),
    ("loud", "quiet"),
    ("in", "out"),
    ("left", "right"),
    ("early", "late"),
    ("thick", "thin"),
    ("push", "pull"),
    ("black", "white"),
    ("first", "last"),
    ("near", "far"),
    ("clean", "dirty"),
    ("strong", "weak"),
    ("good", "bad"),
    ("top", "bottom"),
    ("asleep", "awake"),
    ("win", "lose"),
    ("summer", "winter"),
    ("on", "off"),
    ("rich", "poor"),
)
ONE_WAY_OPPOSITES = (
    ("dark", "light"),
    ("tall", "short"),
    ("long", "short"),
    ("heavy", "light"),
    ("young", "old"),
    ("new", "old"),
    ("soft", "hard"),
    ("easy", "hard"),
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# animal, its article, how many legs it has
ANIMAL_LEGS = (
    ("dog", "a", 4),
    ("cat", "a", 4),
    ("cow", "a", 4),
    ("horse", "a", 4),
    ("sheep", "a", 4),
    ("pig", "a", 4),
    ("bird", "a", 2),
    ("duck", "a", 2),
    ("hen", "a", 2),
    ("person", "a", 2),
    ("spider", "a", 8),
    ("ant", "an", 6),
    ("bee", "a", 6),
    ("beetle", "a", 6),
)
SAY_PHRASES = (
    "hello",
    "goodbye",
    "thank you",
    "good morning",
    "good night",
    "happy birthday",
    "well done",
    "see you later",
    "good luck",
    "welcome",
)
SPELL_WORDS = (
    "cat",
    "dog",
    "sun",
    "cup",
    "hat",
    "red",
    "pig",
    "bus",
    "box",
    "map",
    "egg",
    "fox",
    "bed",
    "pen",
    "hen",
)

COLOUR = (
    Template("what_colour", "what colour is {thing}?", "{thing} is {colour}."),
    Template("colour_of", "what is the colour of {thing}?", "{thing} is {colour}."),
    Template("tell_me", "tell me the colour of {thing}.", "{thing} is {colour}."),
    Template("do_you_know", "do you know what colour {thing} is?", "{thing} is {colour}."),
    Template("which_colour", "which colour is {thing}?", "{thing} is {colour}."),
    Template("usually", "what colour is {thing} usually?", "{thing} is usually {colour}."),
    Template("name_colour", "name the colour of {thing}.", "{thing} is {colour}."),
)
SOUND = (
    Template("what_say", "what does {a_animal} say?", "{a_animal} says {sound}."),
    Template("what_sound", "what sound does {a_animal} make?", "{a_animal} says {sound}."),
    Template("what_noise", "what noise does {a_animal} make?", "{a_animal} says {sound}."),
    Template("how_go", "how does {a_animal} go?", "{a_animal} goes {sound}."),
    Template("the_say", "what does the {animal} say?", "The {animal} says {sound}."),
    Template("tell_me", "tell me what {a_animal} says.", "{a_animal} says {sound}."),
    Template("which_sound", "which sound does {a_animal} make?", "{a_animal} says {sound}."),
)
ANIMAL = (
    Template("which_says", "which animal says {sound}?", "{a_animal} says {sound}."),
    Template("what_goes", "what animal goes {sound}?", "{a_animal} goes {sound}."),
    Template("who_says", "who says {sound}?", "{a_animal} says {sound}."),
    Template("makes_sound", "what animal makes the sound {sound}?", "{a_animal} says {sound}."),
    Template("guess", "guess the animal: {sound}!", "That is {a_animal}."),
)
OPPOSITE = (
    Template("what_is", "what is the opposite of {word}?", "The opposite of {word} is {opposite}."),
    Template("tell_me", "tell me the opposite of {word}.", "The opposite of {word} is {opposite}."),
    Template("whats", "what's the opposite of {word}?", "The opposite of {word} is {opposite}."),
    Template("give_me", "give me the opposite of {word}.", "The opposite of {word} is {opposite}."),
    Template(
        "which_word", "which word means the opposite of {word}?", "{opposite} is the opposite of {word}."
    ),
    Template("do_you_know", "do you know the opposite of {word}?", "The opposite of {word} is {opposite}."),
    Template("say_opposite", "say the opposite of {word}.", "The opposite of {word} is {opposite}."),
)
DAY_AFTER = (
    Template("comes_after", "what day comes after {day}?", "{next} comes after {day}."),
    Template("what_comes_after", "what comes after {day}?", "{next} comes after {day}."),
    Template("day_after", "what is the day after {day}?", "The day after {day} is {next}."),
    Template("follows", "which day follows {day}?", "{next} follows {day}."),
    Template("tomorrow", "if today is {day}, what day is tomorrow?", "Tomorrow is {next}."),
    Template("next_day", "what is the next day after {day}?", "The next day is {next}."),
)
DAY_BEFORE = (
    Template("comes_before", "what day comes before {day}?", "{previous} comes before {day}."),
    Template("what_comes_before", "what comes before {day}?", "{previous} comes before {day}."),
    Template("day_before", "what is the day before {day}?", "The day before {day} is {previous}."),
    Template("just_before", "which day is just before {day}?", "{previous} is just before {day}."),
    Template("yesterday", "if today is {day}, what day was yesterday?", "Yesterday was {previous}."),
    Template("right_before", "which day comes right before {day}?", "{previous} comes right before {day}."),
)
MONTH_AFTER = (
    Template("comes_after", "what month comes after {month}?", "{next} comes after {month}."),
    Template("which_after", "which month comes after {month}?", "{next} comes after {month}."),
    Template("month_after", "what is the month after {month}?", "The month after {month} is {next}."),
    Template("follows", "which month follows {month}?", "{next} follows {month}."),
    Template("next_month", "if it is {month} now, what month is next?", "Next month is {next}."),
    Template("what_comes_after", "what comes after {month}?", "{next} comes after {month}."),
)
MONTH_BEFORE = (
    Template("comes_before", "what month comes before {month}?", "{previous} comes before {month}."),
    Template("which_before", "which month comes before {month}?", "{previous} comes before {month}."),
    Template("month_before", "what is the month before {month}?", "The month before {month} is {previous}."),
    Template("just_before", "which month is just before {month}?", "{previous} is just before {month}."),
    Template("last_month", "if it is {month} now, what was last month?", "Last month was {previous}."),
    Template("what_comes_before", "what comes before {month}?", "{previous} comes before {month}."),
)
LEGS = (
    Template("how_many", "how many legs does {a_animal} have?", "{a_animal} has {legs} legs."),
    Template("legs_on", "how many legs are there on {a_animal}?", "{a_animal} has {legs} legs."),
    Template("walks_on", "how many legs does {a_animal} walk on?", "{a_animal} walks on {legs} legs."),
    Template("tell_me", "tell me how many legs {a_animal} has.", "{a_animal} has {legs} legs."),
    Template("count_legs", "count the legs of {a_animal}.", "{a_animal} has {legs} legs."),
    Template("number_of", "what is the number of legs of {a_animal}?", "{a_animal} has {legs} legs."),
)

COUNT_UP = (
    Template("count_from", "count from {start} to {end}.", "{sequence}."),
    Template("please", "please count from {start} to {end}.", "{sequence}."),
    Template("can_you", "can you count from {start} to {end}?", "{sequence}."),
    Template("count_up", "count up from {start} to {end}.", "{sequence}."),
    Template("start_at", "start at {start} and count to {end}.", "{sequence}."),
    Template("say_numbers", "say the numbers from {start} to {end}.", "{sequence}."),
    Template("starting_at", "count to {end}, starting at {start}.", "{sequence}."),
)
COUNT_DOWN = (
    Template("count_down", "count down from {start} to {end}.", "{sequence}."),
    Template("backwards", "count backwards from {start} to {end}.", "{sequence}."),
    Template("please", "please count down from {start} to {end}.", "{sequence}."),
    Template("can_you", "can you count backwards from {start} to {end}?", "{sequence}."),
    Template("go_down", "go down from {start} to {end}, one number at a time.", "{sequence}."),
    Template("say_numbers", "say the numbers from {start} down to {end}.", "{sequence}."),
)
SAY = (
    Template("say", "say {phrase}.", "{phrase}!"),
    Template("please_say", "please say {phrase}.", "{phrase}!"),
    Template("can_you_say", "can you say {phrase}?", "{phrase}!"),
    Template("say_to_me", "say {phrase} to me.", "{phrase}!"),
    Template("i_want", "I want you to say {phrase}.", "{phrase}!"),
    Template("could_you", "could you say {phrase}, please?", "{phrase}!"),
)
SPELL = (
    Template("spell", "spell {word}.", "{letters}."),
    Template("how_spell", "how do you spell {word}?", "{letters}."),
    Template("can_you", "can you spell {word}?", "{letters}."),
    Template("the_word", "please spell the word {word}.", "{letters}."),
    Template("for_me", "spell {word} for me.", "{letters}."),
    Template("letters_in", "what are the letters in {word}?", "{letters}."),
    Template("how_spelled", "how is {word} spelled?", "{letters}."),
)


def _slug(text: str) -> str:
    return text.lower().replace(" ", "_")


def _neighbours(family: str, names: tuple[str, ...], slot: str) -> tuple[Content, ...]:
    """``X_after`` / ``X_before`` contents over a cycle of names (days, months)."""
    step = 1 if family.endswith("_after") else -1
    answer_slot = "next" if step == 1 else "previous"
    contents = []
    for index, name in enumerate(names):
        answer = names[(index + step) % len(names)]
        contents.append(
            Content(f"{family}:{_slug(name)}", {slot: name, answer_slot: answer}, (answer.lower(),))
        )
    return tuple(contents)


def fact_families() -> list[Family]:
    """Colours, animal sounds (both ways), opposites, days and months after / before, legs of animals."""
    colours = tuple(
        Content(f"colour:{_slug(thing.split(' ', 1)[-1])}", {"thing": thing, "colour": colour}, (colour,))
        for thing, colour in THING_COLOURS
    )
    sounds = tuple(
        Content(
            f"sound:{animal}", {"animal": animal, "a_animal": f"{article} {animal}", "sound": sound}, (sound,)
        )
        for animal, article, sound in ANIMAL_SOUNDS
    )
    animals = tuple(
        Content(
            f"animal:{sound}",
            {"animal": animal, "a_animal": f"{article} {animal}", "sound": sound},
            (animal,),
        )
        for animal, article, sound in ANIMAL_SOUNDS
    )
    directed = [*OPPOSITES, *((b, a) for a, b in OPPOSITES), *ONE_WAY_OPPOSITES]
    opposites = tuple(
        Content(f"opposite:{word}", {"word": word, "opposite": opposite}, (opposite,))
        for word, opposite in directed
    )
    legs = tuple(
        Content(
            f"legs:{animal}",
            {"a_animal": f"{article} {animal}", "legs": number_to_words(count)},
            (number_to_words(count),),
        )
        for animal, article, count in ANIMAL_LEGS
    )
    return [
        Family("fact", "colour", COLOUR, colours, per_content=3),
        Family("fact", "sound", SOUND, sounds, per_content=3),
        Family("fact", "animal", ANIMAL, animals, per_content=2),
        Family("fact", "opposite", OPPOSITE, opposites, per_content=2),
        Family("fact", "day_after", DAY_AFTER, _neighbours("day_after", DAYS, "day"), per_content=3),
        Family("fact", "day_before", DAY_BEFORE, _neighbours("day_before", DAYS, "day"), per_content=3),
        Family(
            "fact", "month_after", MONTH_AFTER, _neighbours("month_after", MONTHS, "month"), per_content=3
        ),
        Family(
            "fact", "month_before", MONTH_BEFORE, _neighbours("month_before", MONTHS, "month"), per_content=3
        ),
        Family("fact", "legs", LEGS, legs, per_content=3),
    ]


def _count(family: str, start: int, end: int) -> Content:
    """Counting from ``start`` to ``end`` (up or down, both included): "One, two, three"."""
    step = 1 if end >= start else -1
    numbers = [number_to_words(n) for n in range(start, end + step, step)]
    slots = {"start": numbers[0], "end": numbers[-1], "sequence": sentence(", ".join(numbers))}
    return Content(f"{family}:{start}:{end}", slots, tuple(" ".join(numbers).split()))


def instruction_families() -> list[Family]:
    """Count up (from 0..10, three to eight numbers) or down (to 0..10), say a phrase, spell a word."""
    lengths = range(3, 9)
    ups = tuple(_count("count_up", start, start + n - 1) for start in range(0, 11) for n in lengths)
    downs = tuple(_count("count_down", end + n - 1, end) for end in range(0, 11) for n in lengths)
    says = tuple(
        Content(f"say:{_slug(phrase)}", {"phrase": phrase}, tuple(phrase.split())) for phrase in SAY_PHRASES
    )
    spells = tuple(
        Content(f"spell:{word}", {"word": word, "letters": ", ".join(word.upper())}, tuple(word))
        for word in SPELL_WORDS
    )
    return [
        Family("instruction", "count_up", COUNT_UP, ups, per_content=2),
        Family("instruction", "count_down", COUNT_DOWN, downs, per_content=2),
        Family("instruction", "say", SAY, says, per_content=3),
        Family("instruction", "spell", SPELL, spells, per_content=3),
    ]
