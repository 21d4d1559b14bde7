"""Errors in what a user gave (a recipe, a command line, a data file): ``funaudiochat-train`` prints their
message and exits with status 2 instead of a traceback. Anything else is a bug and keeps its traceback."""


class UserInputError(ValueError):
    """Bad input; the message names what was wrong and what is allowed."""
