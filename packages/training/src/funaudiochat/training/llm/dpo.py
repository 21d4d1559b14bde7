"""Multi-task DPO over joint text + speech responses (Fun-Audio-Chat report §2.4 step 3).

A preference pair is one prompt with a chosen and a rejected answer, each a full official-layout batch row
(the answer's text tokens and its speech codes). The log-probability of an answer is

    log p(answer) = sum log p(text tokens) + speech_weight * sum log p(speech codes)

(the text head and the Speech Refined Head, teacher-forced), and DPO (Rafailov et al. 2023) pulls the policy
towards the chosen answers relative to a frozen reference model:

    loss = -log sigmoid(beta * ((log pi(c) - log ref(c)) - (log pi(r) - log ref(r))))

Pairs carry a task name; the four of the report are ``robustness`` (real or noisy speech),
``instruction_following`` (emotion, style, prosody), ``audio_understanding`` and ``empathy``. Each task's
pairs weigh ``task_weights[task]`` in the batch mean (their share of the data is set where the task
datasets are mixed, see ``preference.TaskMixture``). The report publishes no beta, weights or pairs: the
defaults are DPO's usual beta 0.1 and equal weights.

Batch: ``{"chosen": forward kwargs, "rejected": forward kwargs, "task": [B] names}``, rows aligned.

Example:
    >>> MultiTaskDPOModule(model="core_cocktail/", beta=0.1, task_weights={"empathy": 2.0, "robustness": 1.0})
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .module import SpeechLLMModule, build_model

TASKS = ("robustness", "instruction_following", "audio_understanding", "empathy")


class MultiTaskDPOModule(SpeechLLMModule):
    """DPO on text + speech log-probabilities with per-task weights (see the module docstring).

    Args:
        reference: the frozen reference model (``build_model`` spec); None: a copy of the policy as it is
            at the start (the usual choice: the SFT / Core-Cocktail model).
        beta: DPO temperature (> 0).
        speech_weight: weight of the speech codes' log-probability in an answer's (>= 0).
        task_weights: task name -> weight (> 0); pairs of other tasks are refused.
        other arguments: as ``SpeechLLMModule`` (DPO usually runs at a low learning rate, e.g. 5e-7).
    """

    def __init__(
        self,
        model: str | Mapping[str, Any] = "???",
        reference: str | Mapping[str, Any] | None = None,
        beta: float = 0.1,
        speech_weight: float = 1.0,
        task_weights: Mapping[str, float] | None = None,
        freeze: Sequence[str] = (),
        lora: Mapping[str, Any] | None = None,
        lr: float = 5e-7,
        min_lr_ratio: float = 0.1,
        schedule: str = "cosine",
        warmup_steps: int = 0,
        total_steps: int | None = None,
        weight_decay: float = 0.0,
        betas: Sequence[float] = (0.9, 0.999),
        export_dir: str | None = None,
    ):
        if beta <= 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        if speech_weight < 0:
            raise ValueError(f"speech_weight must be >= 0, got {speech_weight}")
        task_weights = dict(task_weights or {task: 1.0 for task in TASKS})
        bad = {k: v for k, v in task_weights.items() if not v > 0}
        if not task_weights or bad:
            raise ValueError(
                f"task_weights must be a non-empty mapping of positive weights, got {task_weights}"
            )
        super().__init__(
            model=model,
            freeze=freeze,
            lora=None,
            lr=lr,
            min_lr_ratio=min_lr_ratio,
            schedule=schedule,
            warmup_steps=warmup_steps,
            total_steps=total_steps,
            weight_decay=weight_decay,
            betas=betas,
            export_dir=export_dir,
        )
        self.save_hyperparameters()
        self.task_weights = task_weights
        ref = copy.deepcopy(self.model) if reference is None else build_model(reference)
        ref.eval().requires_grad_(False)
        self.reference = [ref]  # a list: Lightning neither trains nor checkpoints it
        if lora is not None:
            from .module import add_lora

            if "language_model" in freeze:
                raise ValueError("lora adapts the LLM; do not also freeze language_model")
            add_lora(self.model.language_model, lora)

    def answer_logps(self, model, kwargs: Mapping[str, Any]) -> torch.Tensor:
        """``[B]`` log-probabilities of the answers of a batch (text + speech_weight * speech)."""
        out = model(**self.model_inputs(kwargs), return_sequence_logps=True)
        if out.text_logps is None:
            raise ValueError("preference batches need 'labels' (the answer tokens; -100 elsewhere)")
        return out.text_logps + self.hparams.speech_weight * out.speech_logps

    def pair_losses(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Per pair: ``loss``, ``margin`` (beta-scaled reward difference) and the rewards."""
        ref = self.reference[0]
        if next(ref.parameters()).device != self.device:
            ref.to(self.device)
        policy_c = self.answer_logps(self.model, batch["chosen"])
        policy_r = self.answer_logps(self.model, batch["rejected"])
        with torch.no_grad():
            ref_c = self.answer_logps(ref, batch["chosen"])
            ref_r = self.answer_logps(ref, batch["rejected"])
        beta = self.hparams.beta
        reward_c, reward_r = beta * (policy_c - ref_c), beta * (policy_r - ref_r)
        margin = reward_c - reward_r
        return {"loss": -F.logsigmoid(margin), "margin": margin, "chosen": reward_c, "rejected": reward_r}

    def weights_of(self, tasks: Sequence[str]) -> torch.Tensor:
        unknown = sorted(set(tasks) - set(self.task_weights))
        if unknown:
            raise ValueError(
                f"pairs of unknown tasks {unknown}; task_weights has {sorted(self.task_weights)}"
            )
        return torch.tensor([self.task_weights[t] for t in tasks], device=self.device)

    def _step(self, batch, prefix: str) -> torch.Tensor:
        parts = self.pair_losses(batch)
        tasks = list(batch["task"])
        weights = self.weights_of(tasks)
        loss = (weights * parts["loss"]).sum() / weights.sum()
        size = len(tasks)
        self.log(f"{prefix}/loss", loss, prog_bar=True, batch_size=size)
        self.log(f"{prefix}/reward_accuracy", (parts["margin"] > 0).float().mean(), batch_size=size)
        self.log(f"{prefix}/reward_margin", parts["margin"].mean(), batch_size=size)
        for task in sorted(set(tasks)):
            rows = torch.tensor([t == task for t in tasks], device=self.device)
            self.log(f"{prefix}/loss_{task}", parts["loss"][rows].mean(), batch_size=int(rows.sum()))
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")
