"""funaudiochat.chat: the thin orchestration layer.

- ``Pipeline``: speech or text in, text and speech out (``chat`` offline and batched, ``stream`` hop by
  hop); ``Request`` / ``Turn`` / ``Sampling`` say what is asked; ``Reply`` and the stream's events what comes
  back.
- ``loaders``: the one place a pipeline's parts are built (from a folder, into a folder, seeded random).
- the ``funaudiochat`` command (``cli``).
"""

from .pipeline import Pipeline, load_pipeline, random_pipeline, save_pipeline
from .replies import AudioChunk, Done, Reply, TextDelta, Timings
from .request import MODES, Request, Sampling, Turn

__all__ = [
    "MODES",
    "AudioChunk",
    "Done",
    "Pipeline",
    "Reply",
    "Request",
    "Sampling",
    "TextDelta",
    "Timings",
    "Turn",
    "load_pipeline",
    "random_pipeline",
    "save_pipeline",
]
