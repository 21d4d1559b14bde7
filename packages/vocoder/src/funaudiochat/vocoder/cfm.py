"""Conditional flow matching around the DiT: Euler sampling with classifier-free guidance, and the
training loss (CosyVoice3's ``CausalConditionalCFM``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .chunks import ChunkPolicy
from .dit import DiT

if TYPE_CHECKING:
    from .flow import FlowConfig


def t_schedule(t: torch.Tensor, scheduler: str) -> torch.Tensor:
    """Map uniform times in [0, 1] onto the solver / training schedule (``cosine``: 1 - cos(t pi / 2))."""
    if scheduler == "cosine":
        return 1 - torch.cos(t * 0.5 * torch.pi)
    if scheduler == "linear":
        return t
    raise ValueError(f"unknown t_scheduler {scheduler!r} (expected 'cosine' or 'linear')")


class CFMDecoder(nn.Module):
    """Conditional flow matching (CosyVoice3's ``CausalConditionalCFM``) around the DiT ``estimator``.

    Sampling integrates dx/dt = v from noise (t = 0) to mel (t = 1) with Euler steps on the scheduled grid;
    v = (1 + cfg) v(mu, spk, cond) - cfg v(0, 0, 0). ``rand_noise`` ``[1, mel, noise_frames]`` is the fixed
    starting noise (see the module docstring)."""

    def __init__(self, config: FlowConfig):
        super().__init__()
        c = config
        self.sigma_min = c.sigma_min
        self.t_scheduler = c.t_scheduler
        self.training_cfg_rate = c.training_cfg_rate
        self.inference_cfg_rate = c.inference_cfg_rate
        self.estimator = DiT(
            c.output_size,
            c.input_size,
            c.output_size,
            c.dim,
            c.depth,
            c.heads,
            c.dim_head,
            c.ff_mult,
            c.dropout,
            c.conv_pos_kernel,
            c.conv_pos_groups,
            c.static_chunk_size,
        )
        generator = torch.Generator().manual_seed(c.noise_seed)
        noise = torch.randn(1, c.output_size, c.noise_frames, generator=generator, device="cpu")
        self.register_buffer("rand_noise", noise, persistent=False)

    @torch.no_grad()
    def forward(
        self,
        mu,
        mask,
        spks,
        cond,
        n_timesteps: int = 10,
        streaming: bool = False,
        noise: torch.Tensor | None = None,
        chunks: ChunkPolicy | None = None,
    ) -> torch.Tensor:
        """mu, cond ``[B, 80, T]``; mask ``[B, 1, T]``; spks ``[B, 80]``; noise ``[1 or B, 80, >= T]``
        (default ``rand_noise``); ``chunks``: the chunk-causal policy when ``streaming`` (default: chunks of
        ``static_chunk_size``). Returns the mel ``[B, 80, T]`` (float32)."""
        frames = mu.shape[2]
        noise = self.rand_noise if noise is None else noise
        if noise.shape[2] < frames:
            raise ValueError(
                f"the inference noise covers {noise.shape[2]} frames but {frames} are needed; "
                "pass a longer noise tensor or raise FlowConfig.noise_frames"
            )
        x = noise[:, :, :frames].to(device=mu.device, dtype=mu.dtype).expand_as(mu)
        t_span = self.time_span(n_timesteps, mu.device, mu.dtype)
        return self.solve_euler(x, t_span, mu, mask, spks, cond, streaming, chunks).float()

    def time_span(self, n_timesteps: int, device=None, dtype=None) -> torch.Tensor:
        """The ``n_timesteps + 1`` solver times from 0 to 1 on the schedule."""
        return t_schedule(torch.linspace(0, 1, n_timesteps + 1, device=device, dtype=dtype), self.t_scheduler)

    def guided(self, velocity: torch.Tensor) -> torch.Tensor:
        """Rows ``[cond; uncond]`` of a velocity -> ``(1 + cfg) v_cond - cfg v_uncond``."""
        v_cond, v_uncond = velocity.chunk(2)
        return (1.0 + self.inference_cfg_rate) * v_cond - self.inference_cfg_rate * v_uncond

    @staticmethod
    def euler(x: torch.Tensor, t_span: torch.Tensor, velocity) -> torch.Tensor:
        """Integrate ``dx/dt = velocity(x, t, step_index)`` over ``t_span`` with Euler steps."""
        t, dt = t_span[0], t_span[1] - t_span[0]
        for step in range(1, len(t_span)):
            x = x + dt * velocity(x, t, step - 1)
            # time is accumulated and the next step is measured from it, as CosyVoice does
            t = t + dt
            if step < len(t_span) - 1:
                dt = t_span[step + 1] - t
        return x

    def solve_euler(self, x, t_span, mu, mask, spks, cond, streaming: bool = False, chunks=None):
        """Euler steps over ``t_span``; the conditional and unconditional branches run as one batch."""
        b = x.shape[0]
        mask_in = torch.cat((mask, mask))
        mu_in = torch.cat((mu, torch.zeros_like(mu)))
        spks_in = torch.cat((spks, torch.zeros_like(spks)))
        cond_in = torch.cat((cond, torch.zeros_like(cond)))

        def velocity(x, t, _):
            v = self.estimator(
                torch.cat((x, x)), mask_in, mu_in, t.expand(2 * b), spks_in, cond_in, streaming, chunks
            )
            return self.guided(v)

        return self.euler(x, t_span, velocity)

    def compute_loss(
        self,
        x1,
        mask,
        mu,
        spks,
        cond,
        streaming: bool = False,
        t: torch.Tensor | None = None,
        z: torch.Tensor | None = None,
        cfg_keep: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flow-matching MSE over the masked frames; returns ``(loss, y)``.

        x1 (target mel), mu, cond ``[B, 80, T]``; mask ``[B, 1, T]``; spks ``[B, 80]``. Drawn when not given,
        in this order (as CosyVoice draws them): ``t [B]`` (uniform, then the schedule; a given ``t`` is
        used as is), noise ``z`` like x1, and ``cfg_keep [B]`` (False drops mu, spks and cond of that item,
        with probability ``training_cfg_rate``). y = (1 - (1 - sigma_min) t) z + t x1, target
        u = x1 - (1 - sigma_min) z. (CosyVoice3's yaml says ``reg_loss_type: l1``; the code at the pinned
        commit ignores it and uses MSE, and so does this.)"""
        b = x1.shape[0]
        if t is None:
            u01 = torch.rand(b, device=x1.device, dtype=x1.dtype, generator=generator)
            t = t_schedule(u01, self.t_scheduler)
        if z is None:
            z = torch.randn(x1.shape, device=x1.device, dtype=x1.dtype, generator=generator)
        if cfg_keep is None:
            if self.training_cfg_rate > 0:
                cfg_keep = torch.rand(b, device=x1.device, generator=generator) > self.training_cfg_rate
            else:
                cfg_keep = torch.ones(b, dtype=torch.bool, device=x1.device)
        t3 = t.reshape(b, 1, 1).to(x1.dtype)
        y = (1 - (1 - self.sigma_min) * t3) * z + t3 * x1
        u = x1 - (1 - self.sigma_min) * z
        keep = cfg_keep.to(x1.dtype)
        mu, spks, cond = mu * keep.view(-1, 1, 1), spks * keep.view(-1, 1), cond * keep.view(-1, 1, 1)
        pred = self.estimator(y, mask, mu, t3.reshape(b), spks, cond, streaming)
        loss = F.mse_loss(pred * mask, u * mask, reduction="sum") / (mask.sum() * u.shape[1])
        return loss, y
