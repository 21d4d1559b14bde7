"""funaudiochat.training.data: spoken-conversation data for the training stages.

Readers (validated up front; one ``DataValidationError`` lists every ``file:line: field: what (allowed)``):

- ``read_sharegpt`` / ``write_sharegpt``: the official sharegpt JSONL, as is (reference §7).
- ``read_manifest`` / ``write_manifest`` / ``ManifestEntry``: our simpler one-pair-per-line manifest.

Records: ``Conversation`` of ``Turn``s and audios (``UserAudio``, ``AssistantSpeech`` with 25 Hz codes).
Batching: ``ConversationEncoder`` (tensors per example, via ``FunAudioChatProcessor``),
``SpokenChatDataset``, ``DurationBucketSampler`` (bucketed, seeded, DDP-aware, resumable) and
``Collator`` (padded batch ``FunAudioChatForConditionalGeneration`` takes). ``CodesCache`` tokenizes
assistant audio on the fly with ``SpeechTokenizer`` and keeps the codes on disk.

Example:
    >>> conversations = read_sharegpt("data/train.jsonl")
    >>> dataset = SpokenChatDataset(conversations, ConversationEncoder(processor))
    >>> sampler = DurationBucketSampler(dataset.durations, max_seconds=120, max_batch_size=16)
    >>> loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=Collator.for_processor(processor))
"""

from .audio_probe import AudioInfo, probe_audio
from .bucketing import DurationBucketSampler
from .codes_cache import CodesCache, tokenizer_fingerprint
from .collate import MODEL_INPUT_KEYS, Collator, model_inputs
from .dataset import SpokenChatDataset
from .encode import IGNORE_INDEX, ConversationEncoder, EncodedConversation
from .errors import DataValidationError, Problem, ProblemLog
from .manifest import ManifestEntry, read_manifest, read_manifest_conversations, write_manifest
from .records import AssistantSpeech, Conversation, Turn, UserAudio
from .sharegpt import conversation_to_sharegpt, read_sharegpt, write_sharegpt
from .speech_tokens import (
    AUDIO_BOS_TOKEN,
    AUDIO_PAD_TOKEN,
    SPEECH_DELAY,
    assistant_token,
    parse_speech_token,
    user_token,
)

__all__ = [
    "AUDIO_BOS_TOKEN",
    "AUDIO_PAD_TOKEN",
    "IGNORE_INDEX",
    "MODEL_INPUT_KEYS",
    "SPEECH_DELAY",
    "AssistantSpeech",
    "AudioInfo",
    "CodesCache",
    "Collator",
    "Conversation",
    "ConversationEncoder",
    "DataValidationError",
    "DurationBucketSampler",
    "EncodedConversation",
    "ManifestEntry",
    "Problem",
    "ProblemLog",
    "SpokenChatDataset",
    "Turn",
    "UserAudio",
    "assistant_token",
    "conversation_to_sharegpt",
    "model_inputs",
    "parse_speech_token",
    "probe_audio",
    "read_manifest",
    "read_manifest_conversations",
    "read_sharegpt",
    "tokenizer_fingerprint",
    "user_token",
    "write_manifest",
    "write_sharegpt",
]
