"""The authors' released mask AE architecture (their `GeneralVAESeg` with the defaults of their base config), so
that their COCO checkpoint loads key for key (`ldmseg convert-original`).

f_t: conv + SiLU, then per stage a conv and a stride-2 conv + SiLU, a conv to the bottleneck width, GroupNorm,
SiLU and a conv to mean and log-variance (the mean is the latent). g: conv to the bottleneck width, an identity
slot (their optional mid block), per upscaler (2x2 transposed conv, channel LayerNorm, SiLU), GroupNorm, SiLU and
a 3x3 conv to N logits at H/2; decoding then interpolates the logits bilinearly to full size, as theirs does.

Both halves are `nn.Sequential` in their order, so their state-dict keys (`encoder.<i>.*`, `decoder.<i>.*`) are
this module's keys. Same interface as `MaskAutoencoder`: reconstruction, stage-2 training and the pipeline take it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ldmseg.models.layers import LayerNorm2d
from ldmseg.models.mask_autoencoder import BitPlaneEncoding, resize_distribution, split_posterior
from ldmseg.models.mask_losses import sample_at


def original_encoder(in_channels: int, widths: tuple[int, ...], bottleneck: int, groups: int,
                     out_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1), nn.SiLU()]
    for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Conv2d(c_in, c_in, 3, padding=1), nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.SiLU()]
    layers += [nn.Conv2d(widths[-1], bottleneck, 3, padding=1), nn.Identity(),
               nn.GroupNorm(groups, bottleneck, eps=1e-6), nn.SiLU(), nn.Conv2d(bottleneck, out_channels, 3, padding=1)]
    return nn.Sequential(*layers)


def original_decoder(latent_channels: int, bottleneck: int, upscalers: int, width: int, groups: int,
                     num_ids: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(latent_channels, bottleneck, 3, padding=1), nn.Identity()]
    for i in range(upscalers):
        layers += [nn.ConvTranspose2d(bottleneck if i == 0 else width, width, 2, stride=2), LayerNorm2d(width),
                   nn.SiLU()]
    layers += [nn.GroupNorm(groups, width), nn.SiLU(), nn.Conv2d(width, num_ids, 3, padding=1)]
    return nn.Sequential(*layers)


class OriginalMaskAutoencoder(BitPlaneEncoding, ModelMixin, ConfigMixin):
    """Bit planes <-> latents, the authors' layout (~2.02 M parameters at their defaults)."""

    @register_to_config
    def __init__(self, num_bits: int = 7, block_out_channels: tuple[int, ...] = (32, 64, 128, 256),
                 int_channels: int = 256, latent_channels: int = 4, num_latents: int = 2, num_upscalers: int = 2,
                 upscale_channels: int = 256, norm_num_groups: int = 32, downsample_factor: int = 8):
        super().__init__()
        if 2 ** (len(block_out_channels) - 1) != downsample_factor:
            raise ValueError(f"{len(block_out_channels)} encoder widths downsample by "
                             f"{2 ** (len(block_out_channels) - 1)}, not {downsample_factor}")
        if num_latents not in (1, 2):
            raise ValueError(f"num_latents must be 1 (latent) or 2 (mean, log-variance), got {num_latents}")
        self.encoder = original_encoder(num_bits, tuple(block_out_channels), int_channels, norm_num_groups,
                                        latent_channels * num_latents)
        self.decoder = original_decoder(latent_channels, int_channels, num_upscalers, upscale_channels,
                                        norm_num_groups, 2**num_bits)

    @property
    def num_ids(self) -> int:
        return 2**self.config.num_bits

    @property
    def interpolation_factor(self) -> int:
        """The bilinear upscaling of the decoder's logits to full size (theirs: 8 / 2**2 = 2)."""
        return self.config.downsample_factor // 2**self.config.num_upscalers

    def encoder_module(self) -> nn.Module:
        return self.encoder

    def encode_distribution(self, bits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean and log-variance (the mean is their `mode()`, what `encode` returns)."""
        return split_posterior(self.encoder(bits), self.config.num_latents == 2)

    def decode_for_loss(self, latents: torch.Tensor) -> torch.Tensor:
        """N logits at H / interpolation_factor (what their training compares)."""
        return self.decoder(latents)

    def point_logits(self, logits: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        return sample_at(logits, coords)

    def decode(self, latents: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Their decode: logits upscaled bilinearly to full size; with `size` elsewhere, log-probabilities there
        (as `MaskAutoencoder.decode`)."""
        logits = self.decoder(latents)
        if self.interpolation_factor > 1:
            logits = F.interpolate(logits, scale_factor=self.interpolation_factor, mode="bilinear",
                                   align_corners=False)
        if size is not None and tuple(logits.shape[-2:]) != tuple(size):
            logits = resize_distribution(logits, size)
        return logits
