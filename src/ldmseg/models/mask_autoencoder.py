"""Stage 1: the shallow mask autoencoder (f_t, g) of LDMSeg §3.1.

f_t: bit planes -> a few stride-2 3x3 convs with SiLU -> D latent channels (no quantisation).
g:   latents -> conv to width -> (transposed conv 2x2 stride 2, channel LayerNorm, SiLU) x k
     -> norm -> 1x1 conv to N logits at H/2; bilinear x2 to full size at inference only.

Beyond the paper's stack (config options; the defaults are the paper's): a pixel-unshuffle input
stem (no 3x3 conv at full resolution), a 3x3 refinement conv after each upsampling, a
two-layer per-pixel head, and the slot head (`head="slots"`): each latent cell decodes K id
distributions ("slots") and each pixel at H/2 picks among the slots of its 3x3 cells. A pixel's
distribution is then a mixture of a few candidate ids read off whole cells, so a boundary between ids
a and b decodes to a mixture of a and b, not to a third id that a per-pixel N-way head, unsure
between two blended codes, can let win a few pixels (docs/experiments.md, "Stage 1: where the mask AE fails").
The pixel head is evaluated in training only at the loss's sampled points: it is
per-pixel, so heading bilinearly sampled features equals sampling the logits (exactly, for the
linear head), at a fraction of the cost of N logit maps at H/2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ldmseg.data.bits import ids_to_bits
from ldmseg.models.layers import LayerNorm2d
from ldmseg.models.mask_losses import sample_at


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor | None) -> torch.Tensor:
    """KL(q(z|y) || N(0, I)) per sample, averaged; 0 for the deterministic AE."""
    if logvar is None:
        return mean.sum() * 0
    return 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1).mean()


def add_latent_noise(latents: torch.Tensor, max_scale: float, generator: torch.Generator | None = None,
                     per_sample_random: bool = True) -> torch.Tensor:
    """Add N(0, (u * max_scale * std)^2): u ~ U(0, 1) per sample in training (robust decoder), u = 1 to probe."""
    if max_scale <= 0:
        return latents
    std = latents.detach().flatten(1).std(1).view(-1, 1, 1, 1)
    u = torch.rand(latents.shape[0], 1, 1, 1, generator=generator) if per_sample_random else torch.ones(1)
    noise = torch.randn(latents.shape, generator=generator, dtype=latents.dtype)
    return latents + noise.to(latents.device) * u.to(latents.device) * max_scale * std


def autoencode(ae: nn.Module, bits: torch.Tensor, latent_noise: float
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Shared training pass of both mask AEs: (decoded, posterior mean, log-variance or None).

    `decoded` is what `ae.point_logits(decoded, coords)` turns into logits at points. A plain tuple,
    so that accelerate's mixed-precision output casting can rebuild it.
    """
    mean, logvar = ae.encode_distribution(bits)
    latents = mean if logvar is None else mean + torch.randn_like(mean) * (0.5 * logvar).exp()
    return ae.decode_for_loss(add_latent_noise(latents, latent_noise)), mean, logvar


def channel_softmax(x: torch.Tensor) -> torch.Tensor:
    """softmax over dim 1 of [B, C, H, W], in the layout `x` has. The decoder's convs leave channels_last
    tensors; torch's softmax(1) on those reduces across a strided axis and repacks (8 x 128 x 64^2: 22 ms on
    2 cores), while softmax over the channels as the contiguous last axis of the NHWC view takes 2.3 ms."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return x.permute(0, 2, 3, 1).softmax(-1).permute(0, 3, 1, 2)
    return x.softmax(1)


def resize_probabilities(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Per-pixel id distributions (softmax of `logits`) resized bilinearly as probabilities to `size`.

    Between a pixel of id a and one of id b this gives the mixture (a and b each near 0.5), where resizing
    the logits gives their geometric mean, which an id moderately likely on both sides can top: a
    one-pixel fragment of a third id along the boundary (the demo AE on bench/autoencoder.py's 256^2
    scenes: argmax PQ 44.4 -> 46.9 on default scenes, 31.0 -> 32.0 on dense ones, from this change alone).
    """
    probs = channel_softmax(logits.float())
    if tuple(probs.shape[-2:]) == tuple(size):
        return probs
    return F.interpolate(probs, size=size, mode="bilinear", align_corners=False)


def resize_distribution(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`resize_probabilities` as log-probabilities (what `decode(latents, size)` returns)."""
    probs = resize_probabilities(logits, size)
    tiny = torch.finfo(probs.dtype).tiny
    if torch.is_grad_enabled() and probs.requires_grad:
        return probs.clamp_min(tiny).log()
    return probs.clamp_min_(tiny).log_()  # inference: in place, the full-size map is the largest tensor here


class ResBlock(nn.Module):
    """Two 3x3 convs with a skip, at latent resolution: gives the decoder context to undo blending."""

    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(LayerNorm2d(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
                                 LayerNorm2d(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class RefineConv(nn.Module):
    """x + conv3x3(x), the conv zero-initialised: spatial context at sub-cell resolution after an upsampling
    (the transposed 2x2 convs see one cell each), and a no-op at step 0, so it can be added to a trained AE."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]  # the 3x3 cells a pixel's slots come from


def slot_mixture(log_slots: torch.Tensor, weight_logits: torch.Tensor) -> torch.Tensor:
    """Dense mixture: slots [B, K, N, h, w], weight logits [B, 9K, H, W] (H = r h; offset-major over the 3x3
    cells, the border cells repeated outside the grid) -> probabilities [B, N, H, W] (channels_last).
    One small matmul per cell ([r^2, 9K] x [9K, N]), no 9K x N map at H x W. Training evaluates this dense
    map too (at crops of 128^2 it has about as many pixels as the loss has points) and samples it there."""
    b, k, n, h, w = log_slots.shape
    r = weight_logits.shape[-1] // w
    padded = F.pad(log_slots.float().exp().reshape(b, k * n, h, w), (1, 1, 1, 1), mode="replicate")
    padded = padded.permute(0, 2, 3, 1)  # [B, h+2, w+2, K N]
    slots = torch.stack([padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in NEIGHBOURS], 3)
    weights = weight_logits.float().softmax(1).reshape(b, 9 * k, h, r, w, r).permute(0, 2, 4, 3, 5, 1)
    probs = torch.bmm(weights.reshape(b * h * w, r * r, 9 * k), slots.reshape(b * h * w, 9 * k, n))
    return probs.view(b, h, w, r, r, n).permute(0, 1, 3, 2, 4, 5).reshape(b, h * r, w * r, n).permute(0, 3, 1, 2)


def log_of(probs: torch.Tensor) -> torch.Tensor:
    return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


def split_posterior(h: torch.Tensor, gaussian: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """An encoder's output as (mean, log-variance clamped as diffusers does), or (latents, None) if not Gaussian."""
    if not gaussian:
        return h, None
    mean, logvar = h.chunk(2, dim=1)
    return mean, logvar.clamp(-30, 20)


class BitPlaneEncoding:
    """What every bit-plane mask AE derives from its `encode_distribution`, `decode` and `decode_for_loss`:
    `encode` (the posterior mean), `encode_ids`, the training pass and `reconstruct`."""

    def encode(self, bits: torch.Tensor) -> torch.Tensor:
        """[B, log2 N, H, W] bits in {-1, 0, 1} -> [B, D, H/f, W/f] latents (posterior mean)."""
        return self.encode_distribution(bits)[0]

    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.encode(ids_to_bits(ids, self.config.num_bits))

    def forward(self, bits: torch.Tensor, latent_noise: float = 0.0) -> tuple:
        """Training pass: posterior sample (Gaussian AE) + optional latent noise -> what `point_logits` reads."""
        return autoencode(self, bits, latent_noise)

    @torch.no_grad()
    def reconstruct(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, H, W] ids -> [B, H, W] ids by argmax of the decoded logits (no post-processing)."""
        return self.decode(self.encode_ids(ids), size=tuple(ids.shape[-2:])).argmax(1)


class MaskAutoencoder(BitPlaneEncoding, ModelMixin, ConfigMixin):
    """Bit-encoded panoptic masks <-> continuous latents at 1/f resolution."""

    @register_to_config
    def __init__(self, num_bits: int = 7, latent_channels: int = 4, downsample_factor: int = 8,
                 encoder_channels: tuple[int, ...] = (32, 64, 128, 256), decoder_channels: int = 256,
                 decoder_blocks: int = 1, gaussian: bool = False, input_stem: str = "conv",
                 decoder_refine: bool = False, head_hidden: int = 0, head: str = "pixel", slots: int = 2):
        super().__init__()
        if head not in ("pixel", "slots"):
            raise ValueError(f"unknown head {head!r} (pixel | slots)")
        stages = downsampling_stages(downsample_factor, encoder_channels)
        self.encoder = encoder_stack(num_bits, encoder_channels, input_stem, latent_channels * (2 if gaussian else 1))
        dec, width = decoder_trunk(latent_channels, decoder_channels, decoder_blocks, stages)
        outputs = 2**num_bits if head == "pixel" else 9 * slots  # slots: weights over the 3x3 cells' slots
        pixel_head: nn.Module = nn.Conv2d(width, outputs, 1)
        if head_hidden:
            pixel_head = nn.Sequential(nn.Conv2d(width, head_hidden, 1), nn.SiLU(), nn.Conv2d(head_hidden, outputs, 1))
        self.decoder = nn.Sequential(*dec, LayerNorm2d(width), pixel_head)
        widths = [decoder_channels // 2**k for k in range(1, stages)]
        self.refine = nn.ModuleList([RefineConv(c) for c in widths] if decoder_refine else [])
        self.slot_head = None
        if head == "slots":
            self.slot_head = nn.Sequential(LayerNorm2d(decoder_channels),
                                           nn.Conv2d(decoder_channels, slots * 2**num_bits, 1))
            with torch.no_grad():  # start with each pixel on its own cell's slots
                last = pixel_head[-1] if isinstance(pixel_head, nn.Sequential) else pixel_head
                last.bias.view(9, slots)[NEIGHBOURS.index((0, 0))] += 2.0

    @property
    def outputs_log_probs(self) -> bool:
        """True when decoded 'logits' are normalised log-probabilities (the slot mixture): the mask loss then
        needs their binary logits, log p - log(1 - p), not the values themselves."""
        return self.slot_head is not None

    @property
    def num_ids(self) -> int:
        return 2**self.config.num_bits

    def encoder_module(self) -> nn.Module:
        """f_t: the part to freeze when only the decoder is fine-tuned."""
        return self.encoder

    def encode_distribution(self, bits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Posterior mean and log-variance (None for the deterministic AE)."""
        return split_posterior(self.encoder(bits), self.config.gaussian)

    def decode_trunk(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents -> (features at latent resolution before the first upsampling, the head's per-pixel input
        features at H/2, refined after each upsampling)."""
        x, cells, refine = latents, latents, iter(self.refine)
        for layer in self.decoder[:-1]:
            if isinstance(layer, nn.ConvTranspose2d) and cells is latents:
                cells = x
            x = layer(x)
            if self.refine and isinstance(layer, nn.SiLU):  # top-level SiLUs end the upsampling stages
                x = next(refine)(x)
        return (x if cells is latents else cells), x

    def decode_features(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> the head's per-pixel input features at H/2."""
        return self.decode_trunk(latents)[1]

    def slot_log_probs(self, cells: torch.Tensor) -> torch.Tensor:
        """Cell features [B, C, h, w] -> [B, K, N, h, w]: each cell's K slot distributions over the ids."""
        logits = self.slot_head(cells).float()
        b, _, h, w = logits.shape
        return logits.reshape(b, self.config.slots, self.num_ids, h, w).log_softmax(2)

    def mixture_probs(self, latents: torch.Tensor) -> torch.Tensor:
        """Slot head: latents -> id probabilities [B, N, H/2, W/2]."""
        cells, features = self.decode_trunk(latents)
        return slot_mixture(self.slot_log_probs(cells), self.decoder[-1](features))

    def decode_for_loss(self, latents: torch.Tensor) -> torch.Tensor:
        """What point_logits reads: the H/2 features (slot head: the mixture's probabilities at H/2)."""
        return self.decode_features(latents) if self.slot_head is None else self.mixture_probs(latents)

    def point_logits(self, decoded: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Logits [B, N, P] at coords [B, P, 2] in [0, 1]: the head on bilinearly sampled features (slot head:
        log of the bilinearly sampled probabilities, as inference resizes them)."""
        if self.slot_head is not None:
            return log_of(sample_at(decoded, coords))
        return self.decoder[-1](sample_at(decoded, coords).unsqueeze(-1)).squeeze(-1)

    def decode(self, latents: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Latents -> N logits at H/2, or log-probabilities at `size` (inference: resize_distribution)."""
        if self.slot_head is not None:
            logits = log_of(self.mixture_probs(latents))
        else:
            logits = self.decoder[-1](self.decode_features(latents))
        if size is not None and tuple(logits.shape[-2:]) != tuple(size):
            logits = resize_distribution(logits, size)
        return logits


def downsampling_stages(downsample_factor: int, encoder_channels: tuple[int, ...]) -> int:
    """log2 f, checked: f a power of two >= 2 and one encoder width per stage plus the stem's."""
    stages = int(math.log2(downsample_factor))
    if 2**stages != downsample_factor or stages < 1:
        raise ValueError(f"downsample_factor must be a power of two >= 2, got {downsample_factor}")
    if len(encoder_channels) != stages + 1:
        raise ValueError(f"encoder_channels needs {stages + 1} widths for f={downsample_factor}")
    return stages


def encoder_stack(in_channels: int, channels: tuple[int, ...], stem: str, out_channels: int) -> nn.Sequential:
    """f_t: 'conv' = the paper's 3x3 conv at full resolution, then per stage a stride-2 conv and a conv;
    'unshuffle' = input planes folded 2x2 into channels (lossless), so the first stage's convs run at H/2 on
    4 x in_channels and nothing runs at full resolution. Then GroupNorm, SiLU and a conv to the latents."""
    if stem not in ("conv", "unshuffle"):
        raise ValueError(f"unknown input_stem {stem!r} (conv | unshuffle)")
    if stem == "conv":
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels[0], 3, padding=1), nn.SiLU()]
        c_prev, stages = channels[0], channels[1:]
        strides = [2] * len(stages)
    else:
        layers = [nn.PixelUnshuffle(2)]
        c_prev, stages = 4 * in_channels, channels[1:]
        strides = [1] + [2] * (len(stages) - 1)
    for c_out, stride in zip(stages, strides, strict=True):
        layers += [nn.Conv2d(c_prev, c_out, 3, stride=stride, padding=1), nn.SiLU(),
                   nn.Conv2d(c_out, c_out, 3, padding=1), nn.SiLU()]
        c_prev = c_out
    return nn.Sequential(*layers, nn.GroupNorm(min(32, c_prev), c_prev), nn.SiLU(),
                         nn.Conv2d(c_prev, out_channels, 3, padding=1))


def decoder_trunk(latent_channels: int, width: int, blocks: int, stages: int) -> tuple[list[nn.Module], int]:
    """g up to its head: conv to `width`, residual blocks at latent resolution, then (transposed 2x2 conv,
    channel LayerNorm, SiLU) for all but the last of `stages` doublings (the head runs at H/2).
    Returns the layers and the final width."""
    layers: list[nn.Module] = [nn.Conv2d(latent_channels, width, 3, padding=1)]
    layers += [ResBlock(width) for _ in range(blocks)]
    for _ in range(stages - 1):
        layers += [nn.ConvTranspose2d(width, width // 2, 2, stride=2), LayerNorm2d(width // 2), nn.SiLU()]
        width //= 2
    return layers, width
