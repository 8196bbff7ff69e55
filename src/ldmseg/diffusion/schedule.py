"""The noise schedule (SD's scaled_linear, T = 1000) and the conversions between prediction targets."""

from __future__ import annotations

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}

SAMPLERS = {
    "ddim": (DDIMScheduler, {"clip_sample": False, "set_alpha_to_one": False}),
    "dpm++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "unipc": (UniPCMultistepScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "ddpm": (DDPMScheduler, {"clip_sample": False}),
}


def training_scheduler(prediction_type: str) -> DDPMScheduler:
    return DDPMScheduler(**SCHEDULE, prediction_type=prediction_type, clip_sample=False)


def make_sampler(name: str, prediction_type: str, spacing: str = "trailing"):
    """A diffusers scheduler by name (ddim, dpm++, unipc, euler, ddpm) on the training schedule."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown scheduler {name!r}; choose from {sorted(SAMPLERS)}")
    cls, extra = SAMPLERS[name]
    return cls(**SCHEDULE, prediction_type=prediction_type, timestep_spacing=spacing, **extra)


def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.device)[t.long()].float().view(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def predicted_x0(model_out: torch.Tensor, z_t: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor,
                 prediction_type: str) -> torch.Tensor:
    """x0 implied by the model output at timestep t (for self-conditioning and inpainting)."""
    a = _at(alphas_cumprod, t, z_t)
    if prediction_type == "epsilon":
        return (z_t - (1 - a).sqrt() * model_out) / a.sqrt()
    if prediction_type == "v_prediction":
        return a.sqrt() * z_t - (1 - a).sqrt() * model_out
    if prediction_type == "sample":
        return model_out
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def output_for_x0(x0: torch.Tensor, z_t: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor,
                  prediction_type: str) -> torch.Tensor:
    """The model output that implies x0 at (z_t, t): the inverse of `predicted_x0` (inpainting edits x0)."""
    a = _at(alphas_cumprod, t, z_t)
    noise = (z_t - a.sqrt() * x0) / (1 - a).sqrt()
    return target(x0, noise, t, alphas_cumprod, prediction_type)


def target(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor,
           prediction_type: str) -> torch.Tensor:
    a = _at(alphas_cumprod, t, x0)
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return a.sqrt() * noise - (1 - a).sqrt() * x0
    if prediction_type == "sample":
        return x0
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def timestep_weights(kind: str, alphas_cumprod: torch.Tensor, prediction_type: str, gamma: float = 2.0
                     ) -> torch.Tensor:
    """Loss weight per timestep: 'paper' (linear ramp over the lowest 25% of t), 'min-snr', or 'none'."""
    T = len(alphas_cumprod)
    if kind == "none":
        return torch.ones(T)
    if kind == "paper":
        ramp = torch.arange(T, dtype=torch.float32) / (0.25 * T)
        return ramp.clamp(max=1.0).clamp(min=1.0 / (0.25 * T))
    if kind == "min-snr":
        snr = alphas_cumprod / (1 - alphas_cumprod)
        clipped = snr.clamp(max=gamma)
        if prediction_type == "epsilon":
            return clipped / snr
        if prediction_type == "v_prediction":
            return clipped / (snr + 1)
        return clipped
    raise ValueError(f"unknown loss weighting {kind!r} (paper | min-snr | none)")
