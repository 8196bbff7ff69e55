"""The paper's Table 1 variant (†): Stable Diffusion's `AutoencoderKL` fine-tuned as the mask AE.

conv_in is rebuilt for log2(N) bit planes and conv_out for N id logits; every other weight
comes from the pretrained VAE (a local diffusers directory or a hub id). Same interface as
`MaskAutoencoder`, so training, reconstruction and stage 2 take either.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.modeling_utils import ModelMixin

from ldmseg.data.bits import ids_to_bits
from ldmseg.models.image_encoder import sd_subfolder
from ldmseg.models.mask_autoencoder import autoencode, resize_distribution
from ldmseg.models.mask_losses import sample_at


class VAEMaskAutoencoder(ModelMixin, ConfigMixin):
    """AutoencoderKL over bit planes; logits at full resolution."""

    @register_to_config
    def __init__(self, num_bits: int = 7, vae_config: dict | None = None):
        super().__init__()
        cfg = {k: v for k, v in (vae_config or {}).items() if not k.startswith("_")}
        cfg.update(in_channels=num_bits, out_channels=2**num_bits)
        self.vae = AutoencoderKL(**cfg)

    @classmethod
    def from_sd_vae(cls, pretrained: str, num_bits: int = 7) -> VAEMaskAutoencoder:
        """Load SD's VAE (VAE directory, SD pipeline directory or hub id); new conv_in / conv_out for bits / N."""
        vae = AutoencoderKL.from_pretrained(pretrained, subfolder=sd_subfolder(pretrained, "vae"))
        model = cls(num_bits=num_bits, vae_config=dict(vae.config))
        state = {k: v for k, v in vae.state_dict().items()
                 if not k.startswith(("encoder.conv_in", "decoder.conv_out"))}
        missing = model.vae.load_state_dict(state, strict=False).missing_keys
        assert all(k.startswith(("encoder.conv_in", "decoder.conv_out")) for k in missing), missing
        return model

    @property
    def num_ids(self) -> int:
        return 2**self.config.num_bits

    def encoder_module(self) -> torch.nn.Module:
        """f_t (encoder + quant_conv): the part to freeze when only the decoder is fine-tuned."""
        return torch.nn.ModuleList([self.vae.encoder, self.vae.quant_conv])

    def encode_distribution(self, bits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = self.vae.encode(bits).latent_dist
        return dist.mean, dist.logvar

    def encode(self, bits: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(bits).latent_dist.mode()

    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.encode(ids_to_bits(ids, self.config.num_bits))

    def decode(self, latents: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        logits = self.vae.decode(latents).sample
        if size is not None and tuple(logits.shape[-2:]) != tuple(size):
            logits = resize_distribution(logits, size)
        return logits

    def decode_for_loss(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decode(latents)

    def point_logits(self, logits: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Logits [B, N, P] at coords [B, P, 2] in [0, 1], bilinearly sampled."""
        return sample_at(logits, coords)

    def forward(self, bits: torch.Tensor, latent_noise: float = 0.0) -> tuple:
        return autoencode(self, bits, latent_noise)
