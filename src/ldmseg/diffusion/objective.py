"""Stage-2 training objective (paper Algorithm 1): noise the mask latents, predict, weighted MSE.

Options the paper and the authors' code disagree on are config switches: prediction target
(epsilon / v / x0), timestep weighting (paper ramp / min-SNR), per-sample sum or mean, VOID
masking, and self-conditioning probability (Chen et al., "Analog Bits").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ldmseg.diffusion.schedule import predicted_x0, target, timestep_weights, training_scheduler


@dataclass(frozen=True)
class ObjectiveConfig:
    prediction_type: str = "epsilon"
    loss_weighting: str = "paper"
    snr_gamma: float = 2.0
    self_condition_prob: float = 0.5  # 0 disables self-conditioning
    mask_void: bool = True
    reduction: str = "sum"  # 'sum' per sample (Algorithm 1) or 'mean'


def denoiser_input(z_t: torch.Tensor, z_img: torch.Tensor, x0_self: torch.Tensor | None,
                   self_condition: bool) -> torch.Tensor:
    """[noisy mask latent, image latent, (self-conditioning estimate)] on channels."""
    parts = [z_t, z_img]
    if self_condition:
        parts.append(x0_self if x0_self is not None else torch.zeros_like(z_t))
    return torch.cat(parts, 1)


class DiffusionObjective:
    """One training loss evaluation for the denoiser."""

    def __init__(self, cfg: ObjectiveConfig):
        self.cfg = cfg
        self.scheduler = training_scheduler(cfg.prediction_type)
        self.alphas_cumprod = self.scheduler.alphas_cumprod
        self.weights = timestep_weights(cfg.loss_weighting, self.alphas_cumprod, cfg.prediction_type,
                                        cfg.snr_gamma)

    @property
    def self_condition(self) -> bool:
        return self.cfg.self_condition_prob > 0

    def __call__(self, denoise, z0: torch.Tensor, z_img: torch.Tensor, valid: torch.Tensor | None = None,
                 groups: dict[str, torch.Tensor] | None = None, sample_weights: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        """denoise(x, t) -> model output. z0: clean mask latents; valid: [B, H, W] non-VOID pixels; groups: named
        [B] bool masks (e.g. each example's task) whose mean (unweighted) loss is logged too; sample_weights: [B]
        factors on each example's loss (e.g. task balancing)."""
        b = z0.shape[0]
        t = torch.randint(0, len(self.alphas_cumprod), (b,), device=z0.device)
        noise = torch.randn_like(z0)
        z_t = self.scheduler.add_noise(z0, noise, t)
        x0_self = None
        if self.self_condition:
            use = torch.rand(b, device=z0.device) < self.cfg.self_condition_prob
            if use.any():
                with torch.no_grad():
                    first = denoise(denoiser_input(z_t, z_img, None, True), t)
                    est = predicted_x0(first, z_t, t, self.alphas_cumprod, self.cfg.prediction_type)
                x0_self = torch.where(use.view(-1, 1, 1, 1), est.detach(), torch.zeros_like(est))
        out = denoise(denoiser_input(z_t, z_img, x0_self, self.self_condition), t)
        err = (out.float() - target(z0, noise, t, self.alphas_cumprod, self.cfg.prediction_type).float()) ** 2
        if self.cfg.mask_void and valid is not None:
            keep = F.interpolate(valid[:, None].float(), size=z0.shape[-2:], mode="nearest")
            err = err * keep
            count = keep.flatten(1).sum(1).clamp(min=1) * z0.shape[1]
        else:
            count = torch.full((b,), err[0].numel(), device=z0.device, dtype=torch.float32)
        per_sample = err.flatten(1).sum(1)
        detached = per_sample.detach()
        if self.cfg.reduction == "mean":
            per_sample = per_sample / count
        w = self.weights.to(z0.device)[t]
        if sample_weights is not None:
            w = w * sample_weights
        loss = (per_sample * w).mean()
        logs = {}
        buckets = {name: (t >= lo) & (t < hi) for name, lo, hi in
                   (("t<250", 0, 250), ("t250-500", 250, 500), ("t500-750", 500, 750), ("t>=750", 750, 1000))}
        for name, sel in {**buckets, **(groups or {})}.items():
            if sel.any():
                logs[f"loss/{name}"] = (detached[sel] / count[sel]).mean().item()
        return loss, logs


class DirectObjective:
    """The discriminative baseline beside the diffusion objective: the same networks map an image straight to its
    label map's latents (the UNet sees pure noise at the last timestep, as one trailing sampling step does, and
    predicts x0), trained by cross-entropy through the frozen AE decoder instead of by denoising. Served as a
    one-step pipeline that returns that x0, so it is scored by the same code as the diffusion model."""

    self_condition = False

    def __init__(self, autoencoder: torch.nn.Module, scale: float, num_timesteps: int = 1000):
        self.autoencoder, self.scale, self.num_timesteps = autoencoder, scale, num_timesteps

    def __call__(self, denoise, z0: torch.Tensor, z_img: torch.Tensor, valid: torch.Tensor | None = None,
                 groups: dict[str, torch.Tensor] | None = None, sample_weights: torch.Tensor | None = None,
                 labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean cross-entropy over labelled pixels (label 0 = ignore) of the decoded prediction."""
        if labels is None:
            raise ValueError("the direct objective needs the label maps")
        t = torch.full((z0.shape[0],), self.num_timesteps - 1, device=z0.device, dtype=torch.long)
        x0 = denoise(denoiser_input(torch.randn_like(z0), z_img, None, False), t)
        decoded = self.autoencoder.decode(x0.float() / self.scale, size=tuple(labels.shape[-2:]))
        if not bool((labels != 0).any()):  # nothing labelled: no signal (nll_loss would give NaN)
            return decoded.sum() * 0, {}
        loss = F.nll_loss(decoded.float().log_softmax(1), labels.long(), ignore_index=0)  # logits or log-probs
        return loss, {"loss/cross_entropy": float(loss.detach())}
