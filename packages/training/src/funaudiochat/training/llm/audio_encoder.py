"""The speech encoder's own pretraining: the Whisper stand-in.

Fun-Audio-Chat starts its ``continuous_audio_tower`` from Whisper-large-v3, an encoder already trained to
recognise speech; pre-alignment then only has to map what it hears into the LLM. A model trained from
scratch (the demo model) has no such encoder, so this stage makes one the same way Whisper's was made:
the tower learns to transcribe, with CTC over transcript units on its 25 Hz output:

    log-mel [128, T] (100 Hz) -> ContinuousAudioEncoder (the model's own tower: convs, layers, avg-pool,
      ln_post, proj to the LLM width) -> [L, output_dim] at 25 Hz -> Linear(output_dim -> units + blank)
      -> CTC loss (``tokenizer.ctc_loss.ctc_batch_loss``)

With ``text_lm`` (a text LLM folder: its tokenizer and its input embeddings ``E [V, D]``), a second CTC
reads the tower's output the way the speech model will: grouped by 5 (the adapter's mean, 5 Hz) and
classified against the LLM's own embeddings, so that a group *is* roughly the embedding of the word said
in it (the LLM then reads speech like text):

    [L, D] at 25 Hz -> mean of each group of 5 -> g [ceil(L/5), D] -> logits [g.b + c, g @ E^T]
      -> CTC over the transcript's text tokens (blank = the learnt vector b and bias c)

With ``text_tokenizer`` instead (a tokenizer folder, no LLM), the same token CTC reads a table ``E`` of its
own, learnt with the tower: the groups learn to hold one text token each before any LLM exists, so the
tower can train beside the text LLM, and a later fit with ``text_lm`` (and the embedding match) moves them
into the LLM's space.

The loss is ``char_weight * char CTC + token_weight * token CTC + embed_weight * embedding match``. The
token CTC alone rewards long group vectors pointing towards the word's embedding, which the LLM reads far
worse than the embedding itself (``docs/experiments/demo_model/README.md``). The embedding match pulls each
group onto what the LLM reads for text: the embedding of the token the group holds on the token CTC's best
path through the transcript (``ctc_group_labels``), and zero for a blank group; its figure is the squared
error over the targets' squared norm. With it the token CTC reads the shorter groups at a learnt scale
(``token_logit_scale`` is its start). The export then says so in its metadata (``grouped_output =
"llm_input_embeddings"``) and ``build_model`` starts the adapter's ``continual_output_matching`` as the
identity, keeping the groups in that space.

The data are those of the tokenizer stage (``TokenizerDataModule``: audio with transcripts, characters or
phonemes). At the end of ``fit`` the tower is written to ``export_path`` (safetensors, the tower's own
state-dict keys, its config in the metadata, atomically); ``llm.module.build_model`` takes it as
``audio_encoder_from`` (pre-alignment starts from it). The CTC head stays in Lightning's checkpoint.

Example (recipe ``packages/training/recipes/audio_encoder.yaml``):
    >>> module = AudioEncoderModule(encoder={"d_model": 128, "encoder_layers": 3, "output_dim": 256})
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
from funaudiochat.tokenizer.audio_encoder import AudioEncoderConfig, ContinuousAudioEncoder
from torch import nn

from ..config import build_config
from ..optim import adamw_with_schedule, check_optimizer_args
from ..tokenizer.ctc_loss import SHORT_POLICIES, CTCVocabulary, ctc_batch_loss
from ..tokenizer.ctc_targets import Vocabulary, ctc_min_frames
from ..weights import save_safetensors_atomic

WEIGHTS_FORMAT = "funaudiochat-audio-encoder"
GROUPED_IN_LLM_SPACE = "llm_input_embeddings"


def read_llm_input_embeddings(text_lm: str | os.PathLike) -> torch.Tensor:
    """The input embedding table ``[V, D]`` (float32) of a Hugging Face causal-LM folder (safetensors, one
    file or shards; only that tensor is read)."""
    from ..merge import Checkpoint

    source = Checkpoint(text_lm, "text_lm")
    name = next((key for key in source.keys() if key.endswith("embed_tokens.weight")), None)
    if name is None:
        raise ValueError(f"text_lm {text_lm}: no '*embed_tokens.weight' tensor in its weights")
    return source[name].float()


def group_mean(hidden: torch.Tensor, lengths: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``hidden [B, L, D]`` with ``lengths [B]`` valid frames -> means of groups of ``size`` frames
    ``[B, ceil(L/size), D]`` (the padding counts as zeros, as in the model's adapter) and group counts."""
    b, t, d = hidden.shape
    valid = torch.arange(t, device=hidden.device)[None, :] < lengths[:, None]
    hidden = hidden * valid[..., None]
    pad = (-t) % size
    if pad:
        hidden = torch.nn.functional.pad(hidden, (0, 0, 0, pad))
    grouped = hidden.reshape(b, -1, size, d).mean(2)
    return grouped, (lengths + size - 1) // size


class TokenCTCHead(nn.Module):
    """Logits of grouped features against a frozen text-embedding table, with a learnt blank and a learnt
    scale: ``[g.b + c, s * g @ E^T]``.

    Args:
        embeddings: ``[V, D]`` the LLM's input embeddings (kept frozen, not saved in checkpoints), or the
            start of a table of the head's own (``learnt``).
        logit_scale: the scale ``s`` at the start (learnt in log space).
        learnt: ``embeddings`` is a parameter, trained and checkpointed with the head.
    ``forward(g [B, G, D]) -> [B, G, V + 1]`` (class 0 is the blank, token id ``i`` is class ``i + 1``)."""

    def __init__(self, embeddings: torch.Tensor, logit_scale: float = 1.0, learnt: bool = False):
        super().__init__()
        if logit_scale <= 0:
            raise ValueError(f"logit_scale must be > 0, got {logit_scale}")
        if learnt:
            self.embeddings = nn.Parameter(embeddings)
        else:
            self.register_buffer("embeddings", embeddings, persistent=False)
        self.blank = nn.Parameter(torch.zeros(embeddings.shape[1]))
        self.blank_bias = nn.Parameter(torch.zeros(()))
        self.log_scale = nn.Parameter(torch.tensor(math.log(logit_scale)))

    def forward(self, grouped: torch.Tensor) -> torch.Tensor:
        blank = grouped @ self.blank + self.blank_bias
        tokens = self.log_scale.exp() * (grouped @ self.embeddings.T)
        return torch.cat([blank[..., None], tokens], dim=-1)


def ctc_group_labels(
    log_probs: torch.Tensor, groups: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor
) -> list[torch.Tensor | None]:
    """The CTC class of every group on the best path through each transcript (Viterbi forced alignment).

    log_probs: ``[B, G, C]`` group log-probabilities (class 0 the blank); groups: valid groups ``[B]``;
    targets: ``[B, U]`` transcript classes (no blanks), target_lengths: ``[B]``.
    Returns one ``[groups[i]]`` long tensor of classes per row, or None for a row too short for its
    transcript (no path exists)."""
    from torchaudio.functional import forced_align

    labels: list[torch.Tensor | None] = []
    for row in range(log_probs.shape[0]):
        n, u = int(groups[row]), int(target_lengths[row])
        target = targets[row, :u]
        if u == 0 or n < ctc_min_frames(target.tolist()):
            labels.append(None)
            continue
        path, _ = forced_align(
            log_probs[row : row + 1, :n].detach().float().cpu(), target[None].cpu(), blank=0
        )
        labels.append(path[0].to(log_probs.device))
    return labels


def embedding_match_loss(
    grouped: torch.Tensor, labels: list[torch.Tensor | None], embeddings: torch.Tensor
) -> torch.Tensor | None:
    """Squared error of each group against its target (``embeddings[class - 1]``, zero for the blank),
    summed over the valid groups of the rows with labels, over the targets' summed squared norm.

    grouped: ``[B, G, D]``; labels: ``ctc_group_labels``'s; embeddings: ``[V, D]``. None when no row has
    labels (or every label is the blank)."""
    errors, norms = [], []
    for row, label in enumerate(labels):
        if label is None:
            continue
        target = embeddings[(label - 1).clamp(min=0)] * (label > 0)[:, None].to(embeddings.dtype)
        errors.append((grouped[row, : len(label)].float() - target).pow(2).sum())
        norms.append(target.pow(2).sum())
    if not errors or float(sum(norms)) == 0.0:
        return None
    return sum(errors) / sum(norms)


class AudioEncoderModule(CTCVocabulary, L.LightningModule):
    """Trains a ``ContinuousAudioEncoder`` with CTC on transcripts (see the module docstring).

    Args:
        encoder: ``AudioEncoderConfig`` fields (``d_model``, ``encoder_layers``, ``encoder_attention_heads``,
            ``encoder_ffn_dim``, ``output_dim`` = the LLM's width, ...); the model's ``audio_config`` sizes.
        vocabulary: the CTC symbols (blank excluded); ``None`` takes the data module's in ``setup``.
        lr, betas, weight_decay, schedule, warmup_steps, min_lr_ratio, total_steps: AdamW and its schedule.
        short_policy: ``"error"`` or ``"skip"`` for utterances too short for their transcript.
        text_lm: a text LLM folder (tokenizer + safetensors) for the 5 Hz token CTC against its input
            embeddings, or ``None``.
        text_tokenizer: without ``text_lm``, a tokenizer folder for the 5 Hz token CTC against a learnt
            table (rows of norm about 1); ``None`` with no ``text_lm``: characters only.
        group_size: 25 Hz frames per group (the model's ``group_size``, 5).
        char_weight, token_weight: the weights of the two CTC losses (``token_weight`` needs ``text_lm`` or
            ``text_tokenizer``).
        embed_weight: the weight of the embedding match (needs ``token_weight`` > 0: it follows the token
            CTC's path); 0 leaves it out.
        token_logit_scale: the token CTC's logit scale at the start (1: the plain dot product).
        init_weights: a tower (``export``'s safetensors, the same shape) to start from, or ``None``.
        export_path: where ``fit`` writes the tower (``.safetensors``), or ``None`` for nowhere.
    """

    def __init__(
        self,
        encoder: dict[str, Any] | None = None,
        vocabulary: list[str] | None = None,
        lr: float = 1e-3,
        betas: tuple[float, float] | list[float] = (0.9, 0.98),
        weight_decay: float = 0.01,
        schedule: str = "cosine",
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.0,
        total_steps: int | None = None,
        short_policy: str = "skip",
        text_lm: str | None = None,
        text_tokenizer: str | None = None,
        group_size: int = 5,
        char_weight: float = 1.0,
        token_weight: float = 1.0,
        embed_weight: float = 0.0,
        token_logit_scale: float = 1.0,
        init_weights: str | None = None,
        export_path: str | None = None,
    ):
        super().__init__()
        check_optimizer_args(lr, weight_decay, betas, schedule)
        if short_policy not in SHORT_POLICIES:
            raise ValueError(f"short_policy must be one of {list(SHORT_POLICIES)}, got {short_policy!r}")
        if export_path is not None and not str(export_path).endswith(".safetensors"):
            raise ValueError(f"export_path must end in .safetensors, got {export_path!r}")
        if group_size < 1 or char_weight < 0 or token_weight < 0 or char_weight + token_weight == 0:
            raise ValueError(
                f"need group_size >= 1 and non-negative weights, not both 0; got group_size={group_size}, "
                f"char_weight={char_weight}, token_weight={token_weight}"
            )
        if embed_weight < 0 or (embed_weight > 0 and (text_lm is None or token_weight == 0)):
            raise ValueError(
                f"embed_weight must be >= 0 and, when > 0, needs text_lm and token_weight > 0 (the match "
                f"follows the token CTC's path); got embed_weight={embed_weight}, token_weight={token_weight}"
            )
        if text_lm is not None and text_tokenizer is not None:
            raise ValueError(
                "give text_lm (the token CTC against its embeddings) or text_tokenizer (against a learnt "
                "table), not both"
            )
        if text_lm is None and text_tokenizer is None and char_weight == 0:
            raise ValueError(
                "char_weight=0 leaves no loss without text_lm or text_tokenizer (the token CTC needs tokens)"
            )
        self.save_hyperparameters()
        self.config = build_config(AudioEncoderConfig, encoder or {})
        self.encoder = ContinuousAudioEncoder(self.config)
        if init_weights is not None:
            from funaudiochat.base.weights import load_state_dict_strict, read_safetensors

            state, _ = read_safetensors(init_weights)
            load_state_dict_strict(self.encoder, state, f"init_weights {init_weights}")
        self.text_tokenizer = None
        self.token_head: TokenCTCHead | None = None
        if text_lm is not None:
            from transformers import AutoTokenizer

            embeddings = read_llm_input_embeddings(text_lm)
            if embeddings.shape[1] != self.config.output_dim:
                raise ValueError(
                    f"text_lm {text_lm}: embeddings of width {embeddings.shape[1]}, but the tower's "
                    f"output_dim is {self.config.output_dim} (they must be equal)"
                )
            self.text_tokenizer = AutoTokenizer.from_pretrained(text_lm)
            self.token_head = TokenCTCHead(embeddings, token_logit_scale)
        elif text_tokenizer is not None:
            from transformers import AutoTokenizer

            self.text_tokenizer = AutoTokenizer.from_pretrained(text_tokenizer)
            width = self.config.output_dim
            table = torch.randn(len(self.text_tokenizer), width) * width**-0.5
            self.token_head = TokenCTCHead(table, token_logit_scale, learnt=True)
        self.vocabulary: Vocabulary | None = None
        self.head: nn.Linear | None = None
        if vocabulary is not None:
            self.use_vocabulary(Vocabulary(vocabulary))

    def new_head(self, vocabulary: Vocabulary) -> nn.Linear:
        return nn.Linear(self.config.output_dim, len(vocabulary)).to(self.encoder.proj.weight.device)

    def forward(self, mel: torch.Tensor, mel_len: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mel [B, n_mels, T]`` padded, ``mel_len [B]`` -> ``(CTC log-probabilities [B, L, V] float32,
        lengths [B])`` at 25 Hz."""
        if self.head is None:
            raise ValueError("the CTC head is not built: give a vocabulary (see the class docstring)")
        hidden, lengths = self.encoder(mel, mel_len)
        return self.head(hidden).float().log_softmax(-1), lengths

    def text_targets(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Transcripts -> their text-token classes ``[B, U]`` (id + 1; 0 is the blank) and lengths ``[B]``."""
        rows = [torch.tensor(self.text_tokenizer(t, add_special_tokens=False).input_ids) + 1 for t in texts]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        padded = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=0)
        return padded.to(self.device), lengths.to(self.device)

    def _step(self, batch: dict[str, Any], split: str) -> torch.Tensor | None:
        if self.head is None:
            raise ValueError("the CTC head is not built: give a vocabulary (see the class docstring)")
        hidden, lengths = self.encoder(batch["mel"], batch["mel_len"])
        policy, hp = self.hparams.short_policy, self.hparams
        if self.token_head is None:
            log_probs = self.head(hidden).float().log_softmax(-1)
            return ctc_batch_loss(self, batch, log_probs, lengths, split, policy)
        terms = []
        if hp.char_weight > 0:
            log_probs = self.head(hidden).float().log_softmax(-1)
            char = ctc_batch_loss(self, batch, log_probs, lengths, split, policy, name="char_loss")
            terms += [] if char is None else [hp.char_weight * char]
        if hp.token_weight > 0:
            grouped, groups = group_mean(hidden, lengths, hp.group_size)
            log_probs = self.token_head(grouped.float()).log_softmax(-1)
            targets = self.text_targets(batch["text"])
            rate = 25 // hp.group_size
            token = ctc_batch_loss(
                self, batch, log_probs, groups, split, policy, targets, name="token_loss", rate_hz=rate
            )
            terms += [] if token is None else [hp.token_weight * token]
            if hp.embed_weight > 0:
                labels = ctc_group_labels(log_probs, groups, *targets)
                match = embedding_match_loss(grouped, labels, self.token_head.embeddings)
                if match is not None:
                    self.log(f"{split}/embed_loss", match, batch_size=len(batch["text"]))
                    terms.append(hp.embed_weight * match)
        if not terms:
            return None
        loss = sum(terms)
        self.log(f"{split}/loss", loss, prog_bar=True, batch_size=len(batch["text"]))
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        return self._step(batch, "val")

    def configure_optimizers(self):
        return adamw_with_schedule(self, self.parameters(), self.hparams)

    def export(self, path: str | os.PathLike) -> None:
        """Write the tower to ``path`` (its state-dict keys, ``AudioEncoderConfig`` in the metadata)."""
        metadata = {"format": WEIGHTS_FORMAT, "config": json.dumps(asdict(self.config))}
        if self.hparams.text_lm is not None and self.hparams.token_weight > 0:
            metadata["grouped_output"] = GROUPED_IN_LLM_SPACE
            metadata["group_size"] = str(self.hparams.group_size)
        save_safetensors_atomic(self.encoder.state_dict(), path, metadata)

    def on_train_end(self) -> None:
        if self.hparams.export_path is not None and self.trainer.is_global_zero:
            self.export(self.hparams.export_path)
