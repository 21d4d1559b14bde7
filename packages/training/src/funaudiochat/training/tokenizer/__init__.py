"""Speech tokenizer training: the S3 encoder + FSQ bottleneck (6561 codes) trained with a CTC transcript
objective, exported in the ``SpeechTokenizer`` safetensors layout.

- ``TokenizerTrainingModule``: the LightningModule (recipe ``tokenizer.yaml``, run with
  ``funaudiochat-train fit --config packages/training/recipes/tokenizer.yaml data.train=...``).
- ``TokenizerDataModule``: folders of audio with sidecar ``.txt`` transcripts and/or JSONL manifests
  (``{"audio": path, "text": ...}``) -> 16 kHz log-mel + CTC target ids.
- ``ctc_targets``: transcripts -> characters (default) or espeak-ng IPA phonemes -> ids (blank 0).
"""

from .ctc_targets import (
    BLANK,
    CHARACTERS,
    TranscriptTargets,
    Vocabulary,
    char_units,
    ctc_min_frames,
    edit_distance,
    espeak_ipa,
    greedy_decode,
    normalize_text,
    phoneme_units,
    split_ipa,
)
from .data import (
    TokenizerDataModule,
    TokenizerDataset,
    TranscribedAudio,
    add_noise,
    collate_tokenizer,
    list_pairs,
    speed_perturb,
)
from .module import CTCHead, TokenizerTrainingModule, fsq_straight_through

__all__ = [
    "BLANK",
    "CHARACTERS",
    "CTCHead",
    "TokenizerDataModule",
    "TokenizerDataset",
    "TokenizerTrainingModule",
    "TranscribedAudio",
    "TranscriptTargets",
    "Vocabulary",
    "add_noise",
    "char_units",
    "collate_tokenizer",
    "ctc_min_frames",
    "edit_distance",
    "espeak_ipa",
    "fsq_straight_through",
    "greedy_decode",
    "list_pairs",
    "normalize_text",
    "phoneme_units",
    "speed_perturb",
    "split_ipa",
]
