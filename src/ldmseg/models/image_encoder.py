"""f_i: images -> latents at the mask latents' resolution, for channel concatenation.

Two kinds behind one interface (`encode(images in [-1, 1]) -> [B, C, H/f, W/f]`):
`SDVAEImageEncoder` — Stable Diffusion's VAE encoder, frozen, `latent_dist.mode() * scaling_factor`;
`LearnedImageEncoder` — a small conv encoder trained jointly, for from-scratch models (the demo).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


def sd_subfolder(pretrained: str, component: str) -> str | None:
    """A component directory itself -> None; an SD pipeline (local or hub id) -> its component subfolder."""
    local = Path(pretrained)
    if (local / "config.json").exists():
        return None
    return component


class LearnedImageEncoder(ModelMixin, ConfigMixin):
    """Strided conv stack (3x3, GroupNorm, SiLU), one stride-2 conv + one conv per scale; C outputs.

    The first conv already has stride 2: full-resolution convs would dominate a CPU step.
    """

    @register_to_config
    def __init__(self, out_channels: int = 64, downsample_factor: int = 8, channels: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        stages = int(math.log2(downsample_factor))
        if len(channels) != stages:
            raise ValueError(f"channels needs {stages} widths for f={downsample_factor}")

        def block(c_in: int, c_out: int, stride: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
                                 nn.GroupNorm(min(8, c_out), c_out), nn.SiLU())

        layers: list[nn.Module] = []
        for c_in, c_out in zip((3, *channels[:-1]), channels, strict=True):
            layers += [block(c_in, c_out, 2), block(c_out, c_out, 1)]
        layers.append(nn.Conv2d(channels[-1], out_channels, 1))
        self.net = nn.Sequential(*layers)

    @property
    def out_channels(self) -> int:
        return self.config.out_channels

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)


class SDVAEImageEncoder(ModelMixin, ConfigMixin):
    """Stable Diffusion's VAE encoder, frozen (the paper's f_i)."""

    @register_to_config
    def __init__(self, vae_config: dict | None = None):
        super().__init__()
        cfg = {k: v for k, v in (vae_config or {}).items() if not k.startswith("_")}
        self.vae = AutoencoderKL(**cfg)
        self.vae.decoder = None  # only the encoder is used; keeps the saved model small
        self.vae.post_quant_conv = None
        self.requires_grad_(False)

    @classmethod
    def from_sd_vae(cls, pretrained: str) -> SDVAEImageEncoder:
        """SD's VAE from a VAE directory, an SD pipeline directory or a hub id."""
        vae = AutoencoderKL.from_pretrained(pretrained, subfolder=sd_subfolder(pretrained, "vae"))
        enc = cls(vae_config=dict(vae.config))
        state = {k: v for k, v in vae.state_dict().items() if k.startswith(("encoder.", "quant_conv."))}
        enc.vae.load_state_dict(state, strict=False)
        return enc.eval()

    @property
    def out_channels(self) -> int:
        return self.vae.config.latent_channels

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        h = self.vae.encoder(images)
        moments = self.vae.quant_conv(h) if self.vae.quant_conv is not None else h
        mode = moments.chunk(2, dim=1)[0]  # the posterior's mode is its mean
        return mode * self.vae.config.scaling_factor

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)
