"""`LDMSegPipeline`: panoptic segmentation by image-conditioned latent diffusion, as a diffusers pipeline.

Components: `unet` (h), `image_encoder` (f_i), `mask_autoencoder` (f_t / g), `scheduler`,
`task_embeddings`. Image -> f_i latents -> sampling (Algorithm 2) -> g -> upsample to the
input size -> post-processing -> panoptic ids + segments_info with scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from PIL import Image

from ldmseg.data.transforms import resize_labels
from ldmseg.diffusion.ensemble import ensemble
from ldmseg.diffusion.inpainting import (
    DEFAULT_MASK_RULE,
    given_ids_mask,
    known_latents,
    latent_mask,
    match_given_ids,
    to_model_ids,
)
from ldmseg.diffusion.postprocess import panoptic_from_survivors, scaled_area, segment_infos, survivors_to_size
from ldmseg.diffusion.sampling import sample_latents
from ldmseg.diffusion.schedule import make_sampler
from ldmseg.errors import LDMSegError
from ldmseg.models import denoiser as _denoiser  # noqa: F401
from ldmseg.models import image_encoder as _image_encoder  # noqa: F401
from ldmseg.models import mask_autoencoder as _mask_autoencoder  # noqa: F401
from ldmseg.models import vae_mask_autoencoder as _vae_mask_autoencoder  # noqa: F401

# diffusers resolves custom components from sys.modules: importing their modules above lets
# `LDMSegPipeline.from_pretrained` find them.

ImageInput = Image.Image | np.ndarray | torch.Tensor


@dataclass
class LDMSegOutput(BaseOutput):
    """panoptic: int32 id maps (0 = VOID) at each input's size; segments_info: per map, the
    segments with id, area, bbox and score (mean confidence); logits: optional [N, H, W] tensors.
    With a partial mask, given ids are kept and new segments get ids above them."""

    panoptic: list[np.ndarray]
    segments_info: list[list[dict]]
    logits: list[torch.Tensor] | None = None
    known_agreement: list[float] | None = None  # inpainting: share of given pixels the model kept by itself


def to_tensor(image: ImageInput) -> torch.Tensor:
    """PIL / HxWx3 uint8 array / [3, H, W] tensor in [-1, 1] -> [3, H, W] float in [-1, 1]."""
    if isinstance(image, torch.Tensor):
        return image.float()
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, -1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"expected an HxWx3 image, got shape {arr.shape}")
    return torch.from_numpy(np.array(arr[..., :3])).permute(2, 0, 1).float() / 127.5 - 1


class LDMSegPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "image_encoder->unet->mask_autoencoder"

    def __init__(self, unet, image_encoder, mask_autoencoder, scheduler, task_embeddings,
                 scale_factor: float = 1.0, self_condition: bool = True, default_num_inference_steps: int = 50,
                 default_processing_resolution: int = 512, confidence_threshold: float = 0.5,
                 min_area_at_512: float = 512.0, min_core_at_512: float = 512.0, default_ensemble_size: int = 1,
                 ensemble_min_support: float = 0.25):
        super().__init__()
        self.register_modules(unet=unet, image_encoder=image_encoder, mask_autoencoder=mask_autoencoder,
                              scheduler=scheduler, task_embeddings=task_embeddings)
        self.register_to_config(scale_factor=scale_factor, self_condition=self_condition,
                                default_num_inference_steps=default_num_inference_steps,
                                default_processing_resolution=default_processing_resolution,
                                confidence_threshold=confidence_threshold, min_area_at_512=min_area_at_512,
                                min_core_at_512=min_core_at_512, default_ensemble_size=default_ensemble_size,
                                ensemble_min_support=ensemble_min_support)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> LDMSegPipeline:
        """A saved pipeline: 'demo' (the shipped weights), a local directory or a hub id. Weights are read
        from safetensors only (no unpickling), unless `use_safetensors` says otherwise."""
        from ldmseg.weights import resolve_pipeline_path

        kwargs.setdefault("use_safetensors", True)
        return super().from_pretrained(resolve_pipeline_path(str(pretrained_model_name_or_path)), **kwargs)

    def use_sampler(self, name: str, spacing: str = "trailing") -> None:
        """Swap the scheduler for another diffusers sampler (ddim, dpm++, unipc, euler, ddpm)."""
        self.scheduler = make_sampler(name, self.scheduler.config.prediction_type, spacing)

    def _denoise(self, task: str):
        def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            hidden = self.task_embeddings(task, x.shape[0]).to(x.dtype)
            return self.unet(x, t, encoder_hidden_states=hidden).sample
        return denoise

    @torch.no_grad()
    def __call__(self, image: ImageInput | list[ImageInput], num_inference_steps: int | None = None,
                 processing_resolution: int | None = None, generator: torch.Generator | None = None,
                 output_type: str = "np", return_dict: bool = True, output_logits: bool = False,
                 task: str = "panoptic", min_area: int | None = None, show_progress: bool = False,
                 partial_mask: np.ndarray | list[np.ndarray] | None = None,
                 valid_mask: np.ndarray | list[np.ndarray] | None = None, mask_rule: str = DEFAULT_MASK_RULE,
                 keep_known: bool = True, ensemble_size: int | None = None) -> LDMSegOutput | tuple:
        """Segment images; with `partial_mask` (HxW ids, 0 = unknown unless `valid_mask` says which
        pixels are given), complete it instead (Algorithm 3), keeping the given ids. With
        `ensemble_size` K > 1 every image is sampled K times and the sample the others agree with
        most is returned, without the segments fewer than `ensemble_min_support` of the others
        found (diffusion.ensemble)."""
        images = image if isinstance(image, list) else [image]
        steps = num_inference_steps or self.config.default_num_inference_steps
        res = processing_resolution or self.config.default_processing_resolution
        k = self.config.default_ensemble_size if ensemble_size is None else ensemble_size
        if k < 1:
            raise LDMSegError(f"ensemble_size must be >= 1, got {k}")
        tensors = [to_tensor(im) for im in images]
        sizes = [tuple(t.shape[-2:]) for t in tensors]
        hints = _hints(partial_mask, valid_mask, sizes) if partial_mask is not None else None
        device = self.unet.device
        batch = torch.stack([F.interpolate(t[None], size=(res, res), mode="bilinear", align_corners=False,
                                           antialias=True)[0] for t in tensors]).to(device)
        z_img = self.image_encoder.encode(batch).repeat_interleave(k, 0)  # each image's K samples side by side
        sizes = _repeat(sizes, k)
        hints = _repeat(hints, k) if hints is not None else None
        known = known_mask = None
        if hints is not None:
            seed = int(torch.randint(0, 2**31, (1,), generator=generator)) if generator is not None else 0
            rng = np.random.default_rng(seed)
            model_ids = [to_model_ids(p, v, self.mask_autoencoder.num_ids, rng) for p, v in hints]
            known = known_latents(self.mask_autoencoder, model_ids, res, self.config.scale_factor, device)
            valid = torch.from_numpy(np.stack([resize_labels(v, (res, res)) for _, v in hints])).to(device)
            known_mask = latent_mask(valid, tuple(known.shape[-2:]), mask_rule).to(known.dtype)
        z = sample_latents(self._denoise(task), self.scheduler, z_img, self.unet.config.out_channels, steps,
                           self.config.self_condition, generator=generator, progress=show_progress,
                           known=known, known_mask=known_mask)
        logits = self.mask_autoencoder.decode(z / self.config.scale_factor, size=(res, res))
        core = scaled_area(self.config.min_core_at_512, res, res)
        panoptic, infos, kept, agreements = [], [], [], []
        for i, (lg, size) in enumerate(zip(logits, sizes, strict=True)):
            # post-processing decides at res x res; only the ids that can still win are upsampled
            area = min_area if min_area is not None else scaled_area(self.config.min_area_at_512, *size)
            protected = given_ids_mask(model_ids[i], lg.shape[0])[0] if hints is not None else None
            stack, survivors = survivors_to_size(lg, size, core, protected)
            ids, segs, conf = panoptic_from_survivors(stack, survivors, self.config.confidence_threshold, area)
            if hints is not None:
                ids, agreement = match_given_ids(ids, *hints[i], keep_known=keep_known)
                segs = segment_infos(ids, conf)
                agreements.append(agreement)
            panoptic.append(ids)
            infos.append(segs)
            if output_logits:
                kept.append(F.interpolate(lg[None].float(), size=size, mode="bilinear", align_corners=False)[0].cpu())
        if k > 1:
            panoptic, infos, picks = self._ensembles(panoptic, infos, hints, k)
            kept = [kept[i] for i in picks] if kept else kept
            agreements = [agreements[i] for i in picks] if agreements else agreements
        if output_type == "pil":
            from ldmseg.viz import colorize

            panoptic = [Image.fromarray(colorize(p)) for p in panoptic]
        if not return_dict:
            return panoptic, infos
        return LDMSegOutput(panoptic=panoptic, segments_info=infos, logits=kept or None,
                            known_agreement=agreements or None)

    def _ensembles(self, panoptic: list[np.ndarray], infos: list[list[dict]], hints: list | None, k: int
                   ) -> tuple[list[np.ndarray], list[list[dict]], list[int]]:
        """Per image, from its K post-processed samples side by side: the ensemble's map and segments, and
        the index of the sample it came from (diffusion.ensemble)."""
        maps, segments, picks = [], [], []
        for start in range(0, len(panoptic), k):
            samples = list(zip(panoptic[start:start + k], infos[start:start + k], strict=True))
            given = set(np.unique(hints[start][0][hints[start][1]]).tolist()) if hints is not None else set()
            index, (ids, segs) = ensemble(samples, self.config.ensemble_min_support, renumber=hints is None,
                                          protected=given)
            maps.append(ids)
            segments.append(segs)
            picks.append(start + index)
        return maps, segments, picks


def _repeat(items: list, k: int) -> list:
    """Each item k times in a row: [a, b] -> [a, a, b, b] for k = 2."""
    return [item for item in items for _ in range(k)]


def _hints(partial_mask, valid_mask, sizes: list[tuple[int, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image (partial ids int64, valid bool), checked against the image sizes."""
    partials = partial_mask if isinstance(partial_mask, list) else [partial_mask]
    valids = valid_mask if isinstance(valid_mask, list) else [valid_mask] * len(partials)
    if len(partials) != len(sizes) or len(valids) != len(sizes):
        raise LDMSegError(f"got {len(partials)} partial masks / {len(valids)} valid masks for {len(sizes)} images")
    out = []
    for i, (p, v, size) in enumerate(zip(partials, valids, sizes, strict=True)):
        p = np.asarray(p)
        if p.ndim != 2 or p.shape != size:
            raise LDMSegError(f"partial mask {i}: shape {p.shape} does not match its image ({size[0]}x{size[1]})")
        v = (p != 0) if v is None else np.asarray(v).astype(bool)
        if v.shape != size:
            raise LDMSegError(f"valid mask {i}: shape {v.shape} does not match its image ({size[0]}x{size[1]})")
        out.append((p.astype(np.int64), v))
    return out
