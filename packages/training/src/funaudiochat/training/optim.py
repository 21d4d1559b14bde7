"""Learning-rate schedules shared by the training stages, as multipliers of the base LR per optimizer step.

    constant      1 after warmup
    linear        1 -> min_lr_ratio, linearly over total_steps
    cosine        1 -> min_lr_ratio on a half cosine over total_steps (``cosine_with_min_lr``)
    inverse_sqrt  sqrt(warmup / step) after warmup (CosyVoice's ``WarmupLR``, Noam style)

Every schedule first ramps linearly from 1/warmup_steps to 1 over ``warmup_steps`` (none when 0); a run
shorter than its warmup only warms up.
"""

from __future__ import annotations

import math
from collections.abc import Callable

SCHEDULES = ("constant", "linear", "cosine", "inverse_sqrt")


def lr_multiplier(
    schedule: str, warmup_steps: int = 0, total_steps: int | None = None, min_lr_ratio: float = 0.0
) -> Callable[[int], float]:
    """``step -> factor`` for ``torch.optim.lr_scheduler.LambdaLR`` (``step`` counts from 0)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown LR schedule {schedule!r}; choose one of {list(SCHEDULES)}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
    if schedule in ("linear", "cosine") and (total_steps is None or total_steps < 1):
        raise ValueError(
            f"the {schedule!r} schedule needs total_steps >= 1, got {total_steps}; "
            "set trainer.max_steps or the module's total_steps"
        )

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        if schedule == "inverse_sqrt":
            return math.sqrt(max(warmup_steps, 1) / (step + 1))
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        if schedule == "linear":
            return 1.0 - (1.0 - min_lr_ratio) * progress
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def adamw_with_schedule(module, parameters, hparams) -> dict:
    """``configure_optimizers`` of the single-optimizer stages: AdamW over ``parameters`` with the recipe's
    ``lr``, ``betas``, ``weight_decay``, and a per-step ``LambdaLR`` of ``lr_multiplier(schedule,
    warmup_steps, total_steps, min_lr_ratio)``; ``total_steps`` None = the trainer's estimate."""
    import torch

    optimizer = torch.optim.AdamW(
        parameters, lr=hparams.lr, betas=tuple(hparams.betas), weight_decay=hparams.weight_decay
    )
    total = hparams.total_steps
    if total is None and hparams.schedule in ("linear", "cosine") and module._trainer is not None:
        estimate = module.trainer.estimated_stepping_batches
        total = int(estimate) if math.isfinite(estimate) else None
    factor = lr_multiplier(hparams.schedule, hparams.warmup_steps, total, hparams.min_lr_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def check_optimizer_args(lr: float, weight_decay: float, betas, schedule: str) -> None:
    """The AdamW + schedule arguments of a stage, checked once: ``ValueError`` naming the bad one."""
    if lr <= 0 or weight_decay < 0:
        raise ValueError(f"lr must be > 0 and weight_decay >= 0, got {lr}, {weight_decay}")
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {list(SCHEDULES)}")
