"""funaudiochat.base: what every Fun-Audio-Chat package shares (torch and safetensors only).

- ``streaming``: the streaming contract (``StreamState`` and its batch operations, ``Cohorts``).
- ``constants``: the speech-code vocabulary, its special ids, the rates.
- ``weights``: strict state-dict checks and safetensors I/O; ``atomic``: atomic file writes.
- ``rng``: seeded construction that leaves the caller's random state alone.

Nothing here imports another package of the project: it is the leaf every other package may import.
"""

from .atomic import TEMP_PREFIX, atomic_folder, atomic_path, atomic_save, atomic_write, atomic_write_text
from .constants import (
    GROUP_SIZE,
    SPECIAL_IDS,
    SPEECH_BOS,
    SPEECH_CODES,
    SPEECH_DELAY,
    SPEECH_EOS,
    SPEECH_PAD,
    SPEECH_UNUSED,
    SPEECH_VOCAB,
    TOKEN_RATE,
    TOKENIZER_SAMPLE_RATE,
    VOCODER_SAMPLE_RATE,
)
from .rng import seeded
from .streaming import Cohorts, StateMismatch, StreamState, can_join, per_row, ragged, row, shared
from .weights import (
    check_state_dict,
    load_state_dict_strict,
    read_config_metadata,
    read_safetensors,
    state_dict_problems,
    write_safetensors,
)

__all__ = [
    "GROUP_SIZE",
    "SPECIAL_IDS",
    "SPEECH_BOS",
    "SPEECH_CODES",
    "SPEECH_DELAY",
    "SPEECH_EOS",
    "SPEECH_PAD",
    "SPEECH_UNUSED",
    "SPEECH_VOCAB",
    "TEMP_PREFIX",
    "TOKENIZER_SAMPLE_RATE",
    "TOKEN_RATE",
    "VOCODER_SAMPLE_RATE",
    "Cohorts",
    "StateMismatch",
    "StreamState",
    "atomic_folder",
    "atomic_path",
    "atomic_save",
    "atomic_write",
    "atomic_write_text",
    "can_join",
    "check_state_dict",
    "load_state_dict_strict",
    "per_row",
    "ragged",
    "read_config_metadata",
    "read_safetensors",
    "row",
    "seeded",
    "shared",
    "state_dict_problems",
    "write_safetensors",
]
