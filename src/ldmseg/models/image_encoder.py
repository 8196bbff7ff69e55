"""f_i: images -> latents at the mask latents' resolution, for channel concatenation.

Three kinds behind one interface (`encode(images in [-1, 1]) -> [B, C, H/f, W/f]`):
`SDVAEImageEncoder` — Stable Diffusion's VAE encoder, frozen, `latent_dist.mode() * scaling_factor`;
`ViTImageEncoder` — a ViT (transformers' ViTModel, e.g. ViT-B/16), the paper's Table-2 encoder (Supplement B),
fine-tuned jointly, its patch features projected to the latent grid;
`LearnedImageEncoder` — a small conv encoder trained jointly, for from-scratch models (the demo).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ldmseg.errors import LDMSegError


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


def _transformers_vit():
    """transformers' ViTConfig and ViTModel; transformers is the optional `vit` extra."""
    try:
        from transformers import ViTConfig, ViTModel
    except ImportError as err:
        raise LDMSegError("the ViT image encoder needs transformers: pip install 'ldmseg[vit]'") from err
    return ViTConfig, ViTModel


def _pretrained_vit(pretrained: str):
    """transformers' ViTModel with every tensor from `pretrained` (--pretrained-vit): a pickle that needs code
    (transformers reads .bin weights with torch's weights_only), an unreadable file, or weights that lack some of
    the ViT's tensors (transformers would start those from random values) are one line naming the flag."""
    import pickle

    _, vit_model = _transformers_vit()
    if not Path(pretrained).exists():  # a hub id: its downloads under connect and read timeouts
        from ldmseg.weights import bound_hub_timeouts

        bound_hub_timeouts()
    where = f"--pretrained-vit {pretrained}"
    try:
        with _quiet_transformers():
            vit, info = vit_model.from_pretrained(pretrained, add_pooling_layer=False, output_loading_info=True)
    except pickle.UnpicklingError:
        raise LDMSegError(f"{where}: refused, its pickle needs code to load; only weights are read (give "
                          "safetensors weights)") from None
    except (OSError, ValueError) as err:  # missing directory, unknown hub id, no network, not a ViT, truncated
        raise LDMSegError(f"{where}: cannot load it as a transformers ViT ({str(err).strip().splitlines()[0]})"
                          ) from None
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        raise LDMSegError(f"{where}: expected weights for every tensor of its ViT, {len(missing)} missing (e.g. "
                          f"{missing[0]!r})")
    return vit


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' warnings and progress bars off while a checkpoint loads: its report of missing weights becomes
    one error line here, and nothing else should print."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _normalisation(pretrained: str) -> tuple[list[float], list[float]]:
    """The image mean / std the ViT was trained with: its preprocessor_config.json where one is at hand
    (local directory or hub id), else 0.5 / 0.5 (google/vit-base-patch16-224's), i.e. images in [-1, 1]."""
    local = Path(pretrained) / "preprocessor_config.json"
    path: str | Path | None = local if local.exists() else None
    if path is None and not Path(pretrained).exists():
        try:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(pretrained, "preprocessor_config.json")
        except Exception:  # no processor file (or offline): the ViT default below
            path = None
    if path is None:
        return [0.5] * 3, [0.5] * 3
    cfg = json.loads(Path(path).read_text())
    return list(cfg.get("image_mean", [0.5] * 3)), list(cfg.get("image_std", [0.5] * 3))


class ViTImageEncoder(ModelMixin, ConfigMixin):
    """A ViT as f_i (the paper's ViT-B of Table 2): patch tokens [B, (H/p)(W/p), D] -> a 1x1 conv to
    `out_channels` -> bilinear resize to the latent grid (H/f, W/f); position embeddings are interpolated to
    the input's patch grid, so any size divisible by the patch size works. Trained jointly with the UNet."""

    @register_to_config
    def __init__(self, vit_config: dict | None = None, out_channels: int = 64, downsample_factor: int = 8,
                 image_mean: tuple[float, ...] = (0.5, 0.5, 0.5), image_std: tuple[float, ...] = (0.5, 0.5, 0.5)):
        super().__init__()
        vit_cfg, vit_model = _transformers_vit()
        cfg = {k: v for k, v in (vit_config or {}).items() if not k.startswith("_")}
        self.vit = vit_model(vit_cfg(**cfg), add_pooling_layer=False)
        self.proj = nn.Conv2d(self.vit.config.hidden_size, out_channels, 1)
        self.register_buffer("mean", torch.tensor(image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(image_std).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_vit(cls, pretrained: str, out_channels: int = 64, downsample_factor: int = 8) -> ViTImageEncoder:
        """A transformers ViT checkpoint (a directory or hub id, e.g. google/vit-base-patch16-224-in21k), checked
        as `_pretrained_vit` and `_normalisation` say."""
        vit = _pretrained_vit(pretrained)
        mean, std = _normalisation(pretrained)
        enc = cls(vit_config=vit.config.to_dict(), out_channels=out_channels, downsample_factor=downsample_factor,
                  image_mean=tuple(mean), image_std=tuple(std))
        enc.vit.load_state_dict(vit.state_dict())
        return enc

    @property
    def out_channels(self) -> int:
        return self.config.out_channels

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        patch = self.vit.config.patch_size
        h, w = images.shape[-2:]
        if h % patch or w % patch:
            raise LDMSegError(f"the ViT image encoder needs sides divisible by its patch size {patch}, got {h}x{w}")
        x = ((images + 1) / 2 - self.mean) / self.std
        tokens = self.vit(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state[:, 1:]  # drop [CLS]
        grid = tokens.transpose(1, 2).reshape(len(images), -1, h // patch, w // patch)
        z = self.proj(grid)
        f = self.config.downsample_factor
        size = (h // f, w // f)
        return z if tuple(z.shape[-2:]) == size else F.interpolate(z, size=size, mode="bilinear", align_corners=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)
