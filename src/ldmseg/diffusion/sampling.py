"""The denoising loop (paper Algorithm 2) with self-conditioning, for any diffusers scheduler, and
its inpainting form (Algorithm 3): known latents replace the model's x0 estimate inside the known
mask at every step, and the scheduler re-noises that edited estimate to the next timestep.

Editing x0 works with every scheduler because the edited x0 is turned back into the model output
the scheduler expects (epsilon / v / sample) at the same (z_t, t), see `output_for_x0`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from diffusers.utils.torch_utils import randn_tensor
from tqdm import tqdm

from ldmseg.diffusion.objective import denoiser_input
from ldmseg.diffusion.schedule import output_for_x0, predicted_x0

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
STATELESS_SCHEDULERS = ("DDIMScheduler", "DDPMScheduler")  # step() keeps no history: safe to jump back


@torch.no_grad()
def sample_latents(denoise: Denoise, scheduler, z_img: torch.Tensor, latent_channels: int, num_steps: int,
                   self_condition: bool, generator: torch.Generator | None = None, progress: bool = False,
                   known: torch.Tensor | None = None, known_mask: torch.Tensor | None = None,
                   resample: int = 0) -> torch.Tensor:
    """Start from Gaussian noise and denoise to clean mask latents, conditioned on image latents.

    Inpainting: `known` [B, D, h, w] latents and `known_mask` [B, 1, h, w] in [0, 1] (1 = known).
    `resample` > 0 adds RePaint-style jump-backs: after each step, re-noise back and redo it that
    many times (DDIM / DDPM only: multistep solvers keep a history that a jump back would corrupt).
    """
    b, _, h, w = z_img.shape
    if resample and type(scheduler).__name__ not in STATELESS_SCHEDULERS:
        raise ValueError(f"resampling needs a single-step scheduler ({', '.join(STATELESS_SCHEDULERS)}), "
                         f"not {type(scheduler).__name__}")
    z = randn_tensor((b, latent_channels, h, w), generator=generator, device=z_img.device, dtype=z_img.dtype)
    scheduler.set_timesteps(num_steps, device=z_img.device)
    z = z * scheduler.init_noise_sigma
    prediction_type = scheduler.config.prediction_type
    alphas_cumprod = scheduler.alphas_cumprod
    x0_self = None
    step_kwargs = {"generator": generator} if _takes_generator(scheduler) else {}
    timesteps = list(scheduler.timesteps)
    for i, t in enumerate(tqdm(timesteps, desc="sampling", disable=not progress, leave=False)):
        tt = t.expand(b) if t.ndim == 0 else t
        for r in range(resample + 1):
            z_in = scheduler.scale_model_input(z, t)
            out = denoise(denoiser_input(z_in, z_img, x0_self, self_condition), tt)
            if known is not None or self_condition:
                x0 = predicted_x0(out, z_in, tt, alphas_cumprod, prediction_type)
                if known is not None:
                    x0 = torch.lerp(x0, known, known_mask)
                    out = output_for_x0(x0, z_in, tt, alphas_cumprod, prediction_type)
                x0_self = x0 if self_condition else None
            z_next = scheduler.step(out, t, z, **step_kwargs).prev_sample
            if r < resample:
                z = _jump_back(z_next, t, timesteps[i + 1] if i + 1 < len(timesteps) else None, scheduler,
                               generator)
        z = z_next
    if known is not None:
        z = torch.lerp(z, known, known_mask)
    return z


def _jump_back(z_prev: torch.Tensor, t: torch.Tensor, t_prev: torch.Tensor | None, scheduler,
               generator: torch.Generator | None) -> torch.Tensor:
    """Sample z_t ~ q(z_t | z_{t_prev}) (RePaint's resampling step)."""
    ac = scheduler.alphas_cumprod.to(z_prev.device)
    a_prev = ac[int(t_prev)] if t_prev is not None else torch.tensor(1.0, device=z_prev.device)
    ratio = ac[int(t)] / a_prev
    noise = randn_tensor(z_prev.shape, generator=generator, device=z_prev.device, dtype=z_prev.dtype)
    return ratio.sqrt() * z_prev + (1 - ratio).sqrt() * noise


def _takes_generator(scheduler) -> bool:
    return "generator" in inspect.signature(scheduler.step).parameters
