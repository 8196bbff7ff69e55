"""Stage 1 for depth: a shallow autoencoder of relative depth maps in [0, 1] (paper §3.1: "a similar
strategy is applicable to other dense prediction targets").

The same encoder and decoder stacks as the mask AE (models.mask_autoencoder), on one input plane
(2 depth - 1) and with one output channel at H/2, trained by regression: L1 on depth plus L1 on its
spatial gradients (keeps occlusion edges sharp), at full resolution after a bilinear upsampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ldmseg.models.layers import LayerNorm2d
from ldmseg.models.mask_autoencoder import add_latent_noise, decoder_trunk, downsampling_stages, encoder_stack


class DepthAutoencoder(ModelMixin, ConfigMixin):
    """Relative depth [B, H, W] in [0, 1] <-> continuous latents at 1/f resolution."""

    @register_to_config
    def __init__(self, latent_channels: int = 4, downsample_factor: int = 8,
                 encoder_channels: tuple[int, ...] = (16, 32, 64, 128), decoder_channels: int = 128,
                 decoder_blocks: int = 1, input_stem: str = "conv"):
        super().__init__()
        stages = downsampling_stages(downsample_factor, encoder_channels)
        self.encoder = encoder_stack(1, encoder_channels, input_stem, latent_channels)
        layers, width = decoder_trunk(latent_channels, decoder_channels, decoder_blocks, stages)
        self.decoder = nn.Sequential(*layers, LayerNorm2d(width), nn.Conv2d(width, 1, 1))

    def encoder_module(self) -> nn.Module:
        return self.encoder

    def encode_distribution(self, planes: torch.Tensor) -> tuple[torch.Tensor, None]:
        """[B, 1, H, W] planes in [-1, 1] -> (latents, None): deterministic, as the mask AE."""
        return self.encoder(planes), None

    def encode_depth(self, depth: torch.Tensor) -> torch.Tensor:
        """[B, H, W] depth in [0, 1] -> [B, D, H/f, W/f] latents."""
        return self.encoder(depth_planes(depth).to(self.dtype))

    def decode(self, latents: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Latents -> [B, 1, H/2, W/2] depth (unclamped), or bilinearly resized to `size`."""
        out = self.decoder(latents)
        if size is not None and tuple(out.shape[-2:]) != tuple(size):
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        return out

    def decode_depth(self, latents: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Latents -> [B, H, W] depth clamped to [0, 1]."""
        return self.decode(latents, size)[:, 0].clamp(0, 1)

    def forward(self, planes: torch.Tensor, latent_noise: float = 0.0) -> torch.Tensor:
        """Training pass: encode, optional latent noise (robust decoder), decode at H/2."""
        return self.decode(add_latent_noise(self.encoder(planes), latent_noise))

    @torch.no_grad()
    def reconstruct(self, depth: torch.Tensor) -> torch.Tensor:
        return self.decode_depth(self.encode_depth(depth), size=tuple(depth.shape[-2:]))


def depth_planes(depth: torch.Tensor) -> torch.Tensor:
    """[B, H, W] depth in [0, 1] -> [B, 1, H, W] in [-1, 1], the encoder's input."""
    return (depth.float() * 2 - 1).unsqueeze(1)


def depth_autoencoder_loss(pred: torch.Tensor, depth: torch.Tensor, gradient_weight: float = 1.0
                           ) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 + gradient-L1 between the decoded depth (upsampled to the target's size) and the target [B, H, W]."""
    pred = F.interpolate(pred.float(), size=depth.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    l1 = (pred - depth).abs().mean()
    grad = sum(((pred.diff(dim=d) - depth.diff(dim=d)).abs().mean() for d in (-1, -2)), pred.new_zeros(()))
    return l1 + gradient_weight * grad, {"l1": l1.item(), "grad_l1": grad.item()}
