"""``SpokenChatDataset``: validated conversations -> ``EncodedConversation`` items, with their durations.

It joins the pieces of this package: records from ``read_sharegpt`` / ``read_manifest_conversations``,
assistant speech tokenized on the fly by a ``CodesCache`` when a record has no codes yet, the
``ConversationEncoder`` for tensors, and ``durations`` for ``DurationBucketSampler``. With ``max_length``
every conversation's token count is checked when the dataset is built (no audio is read), and all the
offenders are listed in one ``DataValidationError``.

Example:
    >>> dataset = SpokenChatDataset(read_sharegpt("train.jsonl"), ConversationEncoder(processor))
    >>> sampler = DurationBucketSampler(dataset.durations, max_seconds=120)
    >>> loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=Collator.for_processor(processor))
"""

from __future__ import annotations

from collections.abc import Sequence

from torch.utils.data import Dataset

from .codes_cache import CodesCache
from .encode import ConversationEncoder, EncodedConversation
from .errors import DataValidationError, Problem
from .records import Conversation


class SpokenChatDataset(Dataset):
    """Map-style dataset of conversations.

    Args:
        conversations: the examples.
        encoder: turns one conversation into tensors (``ConversationEncoder``).
        codes_cache: tokenizes assistant speech that has no codes (on first access, then from disk);
            required when some conversation needs codes.
        max_length: longest accepted ``input_ids``, checked for every example up front (needs codes: the
            missing ones are computed then, through ``codes_cache``).
    """

    def __init__(
        self,
        conversations: Sequence[Conversation],
        encoder: ConversationEncoder,
        *,
        codes_cache: CodesCache | None = None,
        max_length: int | None = None,
    ):
        self.conversations = list(conversations)
        self.encoder = encoder
        self.codes_cache = codes_cache
        self._lengths: list[int] | None = None
        if codes_cache is None:
            lacking = [c.source or str(i) for i, c in enumerate(self.conversations) if c.needs_codes]
            if lacking:
                shown = ", ".join(lacking[:5]) + (f" and {len(lacking) - 5} more" if len(lacking) > 5 else "")
                raise ValueError(
                    f"{len(lacking)} conversations have assistant speech without codes ({shown}); give a "
                    "codes_cache to tokenize their ref_path audio"
                )
        if max_length is not None:
            self._check_lengths(max_length)

    def __len__(self) -> int:
        return len(self.conversations)

    @property
    def durations(self) -> list[float]:
        """Seconds of speech per example (user audio + assistant speech), for bucketing."""
        return [c.duration for c in self.conversations]

    @property
    def lengths(self) -> list[int]:
        """``input_ids`` length per example (no audio is read; missing codes are computed first, through
        ``codes_cache``), for bucketing by what a padded batch costs."""
        if self._lengths is None:
            self._fill_codes()
            self._lengths = [self.encoder.sequence_length(conv) for conv in self.conversations]
        return self._lengths

    def _fill_codes(self) -> None:
        if self.codes_cache is not None and any(c.needs_codes for c in self.conversations):
            self.conversations = self.codes_cache.fill(self.conversations)

    def conversation(self, index: int) -> Conversation:
        """Example ``index`` with every assistant speech tokenized."""
        conv = self.conversations[index]
        if conv.needs_codes:
            assert self.codes_cache is not None
            conv = self.codes_cache.fill([conv])[0]
        return conv

    def __getitem__(self, index: int) -> EncodedConversation:
        return self.encoder.encode(self.conversation(index))

    def _check_lengths(self, max_length: int) -> None:
        lengths = self.lengths  # fills any missing codes first
        problems = []
        for i, (conv, length) in enumerate(zip(self.conversations, lengths, strict=True)):
            if length > max_length:
                problems.append(
                    Problem(
                        conv.source or f"conversations[{i}]",
                        None,
                        "input_ids",
                        f"{length} tokens, longer than max_length={max_length}",
                        "conversations are never cut; drop or split them",
                    )
                )
        if problems:
            raise DataValidationError(problems)
