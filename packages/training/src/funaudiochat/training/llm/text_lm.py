"""The text LLM the speech model starts from (stage ``text_lm``): a small Qwen3 causal LM trained on
question -> answer text pairs, the stand-in for the pretrained Qwen3 of the official model.

Each pair is one chat rendered by the tokenizer's chat template: a system turn (``system``, by default
``DEFAULT_S2T_PROMPT``, the prompt the speech model answers text-only under), the question as the user
turn, the answer as the assistant turn. The loss is next-token cross-entropy on the answer tokens and the
``<|im_end|>`` that closes them; the prompt, the newline after ``<|im_end|>`` and the padding are -100.

``TextLMModule`` builds ``Qwen3ForCausalLM`` from ``TextLMConfig`` (the sizes; the recipe's ``model.llm``)
and the tokenizer (``vocab_size`` = ``len(tokenizer)``, eos = ``<|im_end|>``, pad, and the audio token ids
``audio_bos_index`` / ``audio_eos_index`` / ``sil_index`` that ``FunAudioChatConfig`` requires of its
``text_config``), seeded by ``init_seed``. At the end of ``fit`` the model and the tokenizer are written
with ``save_pretrained`` into ``export_dir`` at once (a temporary folder renamed into place): a Hugging
Face causal-LM folder that ``AutoModelForCausalLM.from_pretrained`` reads and that the speech stages load
as their LLM with ``model.llm_from`` (its keys, ``model.*`` and ``lm_head.weight``, are those of
``FunAudioChatForConditionalGeneration.language_model``).

``TextChatDataModule`` reads JSONL files of ``{"question": ..., "answer": ...}`` lines (an optional
``"system"`` replaces the system prompt for that pair; other keys are ignored; every bad line is
reported at once as ``file:line: field: what``), encodes them up front, and batches them right-padded
with a seeded, resumable, DDP-aware ``DurationBucketSampler`` over token counts (recipes set
``trainer.use_distributed_sampler: false``). Both classes read the same tokenizer folder; the recipe
writes it once (``data.tokenizer``) and interpolates it into ``model.tokenizer``.

``generate_answer`` answers one question greedily with any Hugging Face causal LM (no Lightning objects).

Example:
    funaudiochat-train fit --config packages/training/recipes/text_lm.yaml \\
        data.train=data/demo_corpus/pairs_train.jsonl data.tokenizer=data/text_tokenizer
    >>> model = AutoModelForCausalLM.from_pretrained("runs/text_lm/model")
    >>> generate_answer(model, AutoTokenizer.from_pretrained("runs/text_lm/model"), "What is two plus three?")
    'Two plus three is five.'
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from funaudiochat.base.atomic import atomic_folder
from funaudiochat.base.rng import seeded
from funaudiochat.drsr.hf_compat import cache_kwargs, output_cache
from funaudiochat.drsr.prompts import DEFAULT_S2T_PROMPT
from funaudiochat.drsr.text_tokenizer import ENDOFTEXT, IM_END, special_token_ids

from ..config import build_config
from ..data import IGNORE_INDEX, DurationBucketSampler, ProblemLog
from ..data.jsonl import has_question_and_answer, parse_json_object, read_lines
from ..datamodule import BucketedDataModule
from ..optim import adamw_with_schedule, check_optimizer_args

# -- the chat text ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextPair:
    """One question -> answer pair and the ``line`` (1-based) of its file; ``system``: the pair's own
    system prompt, or None for the data module's."""

    question: str
    answer: str
    line: int
    system: str | None = None


def read_text_pairs(path: str | os.PathLike) -> list[TextPair]:
    """The pairs of a JSONL file; ``question`` and ``answer`` must be non-empty strings (stripped), an
    optional ``system`` a non-empty string (that pair's system prompt, e.g. the function-calling one);
    other keys are ignored, blank lines skipped.

    Raises:
        ValueError (DataValidationError): every bad line, as ``file:line: field: what (allowed)``; or the
            file is missing or holds no pair."""
    path = Path(path)
    log = ProblemLog(str(path))
    pairs: list[TextPair] = []
    for number, text in read_lines(path, log):
        record = parse_json_object(text, number, log)
        if record is None or not has_question_and_answer(record, number, log):
            continue
        system = record.get("system")
        if system is not None and not (isinstance(system, str) and system.strip()):
            log.add(number, "system", repr(system)[:60], "a non-empty string, or no such key")
            continue
        pairs.append(TextPair(record["question"].strip(), record["answer"].strip(), number, system))
    log.raise_if_any()
    if not pairs:
        raise ValueError(f"{path}: no question/answer pairs")
    return pairs


def chat_messages(question: str, answer: str | None = None, system: str | None = DEFAULT_S2T_PROMPT) -> list:
    """The chat of one pair: ``[system,] user[, assistant]`` (``system`` None: the template's default)."""
    messages = [] if system is None else [{"role": "system", "content": system}]
    messages.append({"role": "user", "content": question})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def prompt_text(tokenizer, question: str, system: str | None = DEFAULT_S2T_PROMPT) -> str:
    """The chat up to the assistant's turn (the generation prompt), rendered by the chat template."""
    return tokenizer.apply_chat_template(
        chat_messages(question, system=system), tokenize=False, add_generation_prompt=True
    )


def prompt_ids(tokenizer, question: str, system: str | None = DEFAULT_S2T_PROMPT) -> list[int]:
    """Token ids of ``prompt_text``: what the model reads before it answers, in training and in
    ``generate_answer`` alike."""
    return _ids(tokenizer, prompt_text(tokenizer, question, system))


def encode_pair(
    tokenizer, question: str, answer: str, system: str | None = DEFAULT_S2T_PROMPT
) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` of one pair, both ``[S]``: the whole chat as the template renders it;
    ``labels`` are the answer's ids and ``<|im_end|>``, ``IGNORE_INDEX`` elsewhere.

    The prompt, the answer up to ``<|im_end|>`` and what follows are tokenized apart, so the prompt's ids
    are exactly ``prompt_ids`` (the boundary never merges across)."""
    prompt = prompt_text(tokenizer, question, system)
    full = tokenizer.apply_chat_template(chat_messages(question, answer, system), tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently inside the whole chat")
    reply = full[len(prompt) :]
    end = reply.find(IM_END)
    if end < 0:
        raise ValueError(f"the chat template does not close the assistant turn with {IM_END}")
    end += len(IM_END)
    head = _ids(tokenizer, prompt)
    answer_ids = _ids(tokenizer, reply[:end])
    tail = _ids(tokenizer, reply[end:])
    labels = [IGNORE_INDEX] * len(head) + answer_ids + [IGNORE_INDEX] * len(tail)
    return head + answer_ids + tail, labels


@torch.no_grad()
def generate_answer(
    model: torch.nn.Module,
    tokenizer,
    question: str,
    system: str | None = DEFAULT_S2T_PROMPT,
    max_new_tokens: int = 64,
) -> str:
    """Greedy answer of a Hugging Face causal LM to ``question`` (the training prompt, ``prompt_ids``):
    ``greedy_reply`` of that prompt."""
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids(tokenizer, question, system)], device=device)
    return greedy_reply(model, tokenizer, {"input_ids": ids}, max_new_tokens)


@torch.no_grad()
def greedy_reply(
    model: torch.nn.Module, tokenizer, prompt: dict[str, torch.Tensor], max_new_tokens: int
) -> str:
    """Greedy continuation of a Hugging Face causal LM after ``prompt`` (its forward's ``input_ids [1, S]``
    or ``inputs_embeds [1, S, D]``): stops at ``<|im_end|>`` / ``<|endoftext|>`` or after ``max_new_tokens``;
    returns the decoded text without special tokens, stripped. The model runs in eval mode and is put back
    as it was."""
    vocab = tokenizer.get_vocab()
    stop = {vocab[t] for t in (IM_END, ENDOFTEXT) if t in vocab}
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = model(**prompt, use_cache=True, logits_to_keep=1)
        answer: list[int] = []
        for _ in range(max_new_tokens):
            token = int(out.logits[0, -1].argmax())
            if token in stop:
                break
            answer.append(token)
            step = torch.tensor([[token]], device=device)
            out = model(input_ids=step, **cache_kwargs(output_cache(out)), use_cache=True, logits_to_keep=1)
    finally:
        model.train(was_training)
    return tokenizer.decode(answer, skip_special_tokens=True).strip()


def load_tokenizer(folder: str | os.PathLike, role: str):
    """``AutoTokenizer.from_pretrained(folder)``, right padding; ``role`` names the recipe key in errors."""
    from transformers import AutoTokenizer

    if not Path(folder).is_dir():
        raise ValueError(f"{role} {folder}: not a folder (a tokenizer saved with save_pretrained)")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.padding_side = "right"
    special_token_ids(tokenizer)  # a ValueError naming the Fun-Audio-Chat tokens it lacks
    return tokenizer


# -- the model ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextLMConfig:
    """The sizes of the text LLM (a ``Qwen3ForCausalLM``); the vocabulary comes from the tokenizer.

    The defaults are the demo model (``recipes/text_lm.yaml``); ``tiny`` is the LLM of
    ``FunAudioChatConfig.tiny`` (tests). ``max_position_embeddings`` only declares a limit: RoPE has no
    table, so it costs nothing."""

    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 64
    intermediate_size: int = 768
    rope_theta: float = 10000.0
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False

    @classmethod
    def tiny(cls) -> TextLMConfig:
        return cls(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            intermediate_size=128,
        )


def qwen3_config(size: TextLMConfig, tokenizer):
    """``Qwen3Config`` of ``size`` for ``tokenizer``: its vocabulary (``len(tokenizer)``), eos
    ``<|im_end|>``, its pad, no bos, and the audio ids ``FunAudioChatConfig`` reads from ``text_config``."""
    from transformers import Qwen3Config

    if size.num_attention_heads % size.num_key_value_heads:
        raise ValueError(
            f"num_attention_heads ({size.num_attention_heads}) must be a multiple of num_key_value_heads "
            f"({size.num_key_value_heads})"
        )
    ids = special_token_ids(tokenizer)
    return Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        num_hidden_layers=size.num_hidden_layers,
        num_attention_heads=size.num_attention_heads,
        num_key_value_heads=size.num_key_value_heads,
        head_dim=size.head_dim,
        intermediate_size=size.intermediate_size,
        rope_theta=size.rope_theta,
        max_position_embeddings=size.max_position_embeddings,
        rms_norm_eps=size.rms_norm_eps,
        tie_word_embeddings=size.tie_word_embeddings,
        sliding_window=None,
        use_sliding_window=False,
        bos_token_id=None,
        eos_token_id=ids.im_end,
        pad_token_id=ids.pad,
        audio_bos_index=ids.audio_bos_index,
        audio_eos_index=ids.audio_eos_index,
        sil_index=ids.sil_index,
    )


def build_text_lm(size: TextLMConfig, tokenizer, seed: int = 0):
    """A randomly initialised ``Qwen3ForCausalLM`` (``seed`` fixes the weights; the caller's random state is
    left as it was), with a greedy generation config that stops at ``<|im_end|>``."""
    from transformers import Qwen3ForCausalLM

    config = qwen3_config(size, tokenizer)
    with seeded(seed):
        model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.bos_token_id = None
    model.generation_config.do_sample = False
    return model


class TextLMModule(L.LightningModule):
    """Trains the text LLM on chat batches (``input_ids``, ``attention_mask``, ``labels``: ``[B, S]``).

    Args:
        tokenizer: the tokenizer folder (the recipe's ``${data.tokenizer}``).
        llm: ``TextLMConfig`` fields, or ``{"preset": "tiny", ...}`` (see ``config.build_config``).
        init_seed: seed of the random initial weights.
        lr, min_lr_ratio, schedule, warmup_steps, total_steps, weight_decay, betas: AdamW and its per-step
            schedule (``optim.adamw_with_schedule``; ``total_steps`` None: the trainer's).
        export_dir: where the model and the tokenizer are written at the end of ``fit`` (None: not).
        init_weights: a model to continue from instead of random weights: an ``export``'s folder (its
            ``model.safetensors``) or a safetensors file, of the same shape (None: random, ``init_seed``).
        freeze: parameter-name prefixes that do not learn (``["model.embed_tokens"]``: the input
            embeddings stay where speech parts trained against them expect them).
    """

    def __init__(
        self,
        tokenizer: str = "???",
        llm: Mapping[str, Any] | None = None,
        init_seed: int = 0,
        lr: float = 1e-3,
        min_lr_ratio: float = 0.1,
        schedule: str = "cosine",
        warmup_steps: int = 0,
        total_steps: int | None = None,
        weight_decay: float = 0.0,
        betas: Sequence[float] = (0.9, 0.999),
        export_dir: str | None = None,
        init_weights: str | None = None,
        freeze: Sequence[str] = (),
    ):
        super().__init__()
        self.save_hyperparameters()
        check_optimizer_args(lr, weight_decay, betas, schedule)
        self.tokenizer = load_tokenizer(tokenizer, "model.tokenizer")
        self.size = build_config(TextLMConfig, llm)
        self.model = build_text_lm(self.size, self.tokenizer, init_seed).train()
        if init_weights is not None:
            from funaudiochat.base.weights import load_state_dict_strict, read_safetensors

            path = Path(init_weights)
            state, _ = read_safetensors(path / "model.safetensors" if path.is_dir() else path)
            load_state_dict_strict(self.model, state, f"model.init_weights {init_weights}")
        names = [name for name, _ in self.model.named_parameters()]
        for prefix in freeze:
            if not any(n == prefix or n.startswith(prefix + ".") for n in names):
                raise ValueError(f"model.freeze: {prefix!r} names no parameter (e.g. {names[0]!r})")
        for name, param in self.model.named_parameters():
            param.requires_grad = not any(name == f or name.startswith(f + ".") for f in freeze)

    def setup(self, stage: str) -> None:
        data = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        other = getattr(data, "tokenizer", None)
        if other is not None and other.get_vocab() != self.tokenizer.get_vocab():
            raise ValueError(
                "data.tokenizer and model.tokenizer differ; give one folder (the recipe interpolates "
                "model.tokenizer: ${data.tokenizer})"
            )

    def forward(self, batch: Mapping[str, torch.Tensor]):
        return self.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch.get("labels")
        )

    def _step(self, batch: Mapping[str, torch.Tensor], prefix: str) -> torch.Tensor:
        loss = self(batch).loss
        self.log(f"{prefix}/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def configure_optimizers(self):
        learning = [p for p in self.model.parameters() if p.requires_grad]
        return adamw_with_schedule(self, learning, self.hparams)

    def export(self, directory: str | os.PathLike) -> Path:
        """``save_pretrained`` of the model (safetensors) and the tokenizer into ``directory``, atomically."""
        with atomic_folder(directory) as staging:
            self.model.save_pretrained(staging)
            self.tokenizer.save_pretrained(staging)
        return Path(directory)

    def on_train_end(self) -> None:
        if self.hparams.export_dir is not None and self.trainer.is_global_zero:
            self.export(self.hparams.export_dir)


# -- the data -----------------------------------------------------------------------------------------------


class TextChatDataset(torch.utils.data.Dataset):
    """Encoded pairs: item ``i`` is ``{"input_ids": [S_i], "labels": [S_i]}`` (long tensors)."""

    def __init__(self, examples: Sequence[tuple[list[int], list[int]]]):
        self.examples = [
            (torch.tensor(i, dtype=torch.long), torch.tensor(t, dtype=torch.long)) for i, t in examples
        ]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        input_ids, labels = self.examples[index]
        return {"input_ids": input_ids, "labels": labels}

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids, _ in self.examples]


class PadCollator:
    """Right-pads a list of items to ``{"input_ids", "attention_mask", "labels"}``, each ``[B, S_max]``:
    ``pad_id`` / 0 / ``IGNORE_INDEX`` after each item's end."""

    def __init__(self, pad_id: int):
        self.pad_id = int(pad_id)

    def __call__(self, items: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        width = max(len(item["input_ids"]) for item in items)
        input_ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(items), width), dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
        for row, item in enumerate(items):
            n = len(item["input_ids"])
            input_ids[row, :n] = item["input_ids"]
            attention_mask[row, :n] = 1
            labels[row, :n] = item["labels"]
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class TextChatDataModule(BucketedDataModule):
    """Question -> answer chats for ``TextLMModule`` (see the module docstring).

    Args:
        train: a JSONL file of pairs, or a list of them.
        tokenizer: the tokenizer folder (the module reads the same one).
        val: JSONL file(s) of pairs for validation, or None.
        system: the system prompt of every chat without its own (None: the chat template's default).
        batch_size: pairs per batch; max_tokens: most tokens (before padding) per batch, or None.
        num_buckets: length buckets of the sampler (1: batches of any lengths; more: similar lengths).
        max_length: most tokens of one chat; longer pairs are reported as errors (None: no limit).
        seed: the shuffling seed (the order of an epoch depends on it and the epoch only).
    """

    def __init__(
        self,
        train: str | Sequence[str] = "???",
        tokenizer: str = "???",
        val: str | Sequence[str] | None = None,
        system: str | None = DEFAULT_S2T_PROMPT,
        batch_size: int = 16,
        max_tokens: int | None = None,
        num_buckets: int = 1,
        max_length: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        self.save_hyperparameters()

    def _dataset(self, files: str | Sequence[str]) -> TextChatDataset:
        h = self.hparams
        examples = []
        for path in [files] if isinstance(files, (str, os.PathLike)) else list(files):
            log = ProblemLog(str(path))
            for pair in read_text_pairs(path):
                system = h.system if pair.system is None else pair.system
                ids, labels = encode_pair(self.tokenizer, pair.question, pair.answer, system)
                if h.max_length is not None and len(ids) > h.max_length:
                    log.add(pair.line, "question+answer", f"{len(ids)} tokens", f"at most {h.max_length}")
                examples.append((ids, labels))
            log.raise_if_any()
        return TextChatDataset(examples)

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_set"):
            return
        self.tokenizer = load_tokenizer(self.hparams.tokenizer, "data.tokenizer")
        self.collate = PadCollator(special_token_ids(self.tokenizer).pad)
        self.train_set = self._dataset(self.hparams.train)
        self.val_set = None if self.hparams.val is None else self._dataset(self.hparams.val)

    def _sampler(self, dataset: TextChatDataset, shuffle: bool) -> DurationBucketSampler:
        h = self.hparams
        trainer = self.trainer
        return DurationBucketSampler(
            dataset.lengths,  # token counts in the place of seconds
            max_seconds=h.max_tokens,
            max_batch_size=h.batch_size,
            num_buckets=h.num_buckets,
            shuffle=shuffle,
            seed=h.seed,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
        )
