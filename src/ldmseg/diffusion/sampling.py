"""The denoising loop (paper Algorithm 2) with self-conditioning, for any diffusers scheduler.

Inpainting (Algorithm 3) is the same loop with known latents pasted into the x0 estimate;
it hooks in through `known` / `known_mask` (issue 5 builds on this).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers.utils.torch_utils import randn_tensor
from tqdm import tqdm

from ldmseg.diffusion.objective import denoiser_input
from ldmseg.diffusion.schedule import predicted_x0

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def sample_latents(denoise: Denoise, scheduler, z_img: torch.Tensor, latent_channels: int, num_steps: int,
                   self_condition: bool, generator: torch.Generator | None = None, progress: bool = False
                   ) -> torch.Tensor:
    """Start from Gaussian noise and denoise to clean mask latents, conditioned on image latents."""
    b, _, h, w = z_img.shape
    z = randn_tensor((b, latent_channels, h, w), generator=generator, device=z_img.device, dtype=z_img.dtype)
    scheduler.set_timesteps(num_steps, device=z_img.device)
    z = z * scheduler.init_noise_sigma
    prediction_type = scheduler.config.prediction_type
    alphas_cumprod = scheduler.alphas_cumprod
    x0_self = None
    step_kwargs = {"generator": generator} if _takes_generator(scheduler) else {}
    for t in tqdm(scheduler.timesteps, desc="sampling", disable=not progress, leave=False):
        tt = t.expand(b) if t.ndim == 0 else t
        z_in = scheduler.scale_model_input(z, t)
        out = denoise(denoiser_input(z_in, z_img, x0_self, self_condition), tt)
        if self_condition:
            x0_self = predicted_x0(out, z_in, tt, alphas_cumprod, prediction_type)
        z = scheduler.step(out, t, z, **step_kwargs).prev_sample
    return z


def _takes_generator(scheduler) -> bool:
    import inspect

    return "generator" in inspect.signature(scheduler.step).parameters
