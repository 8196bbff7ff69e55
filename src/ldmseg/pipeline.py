"""`LDMSegPipeline`: segmentation (and depth) by image-conditioned latent diffusion, as a diffusers pipeline.

Components: `unet` (h), `image_encoder` (f_i), `task_embeddings`, `scheduler`, and a stage-1 AE per task
(`mask_autoencoder` f_t / g for instances, `semantic_autoencoder`, `depth_autoencoder`). Image -> f_i latents
-> sampling with the task's embedding (Algorithm 2) -> the task's decoder at the processing resolution
-> post-processing -> upsampling of what survives to the input size -> ids + segments_info / classes / depth.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline

from ldmseg import checks
from ldmseg.data.images import ImageInput, image_size, load_image, to_processing_size
from ldmseg.data.transforms import resize_labels
from ldmseg.diffusion.ensemble import ensemble
from ldmseg.diffusion.inpainting import (
    DEFAULT_MASK_RULE,
    checked_hints,
    given_id_lut,
    given_ids_mask,
    known_latents,
    latent_mask,
    match_given_ids,
    to_model_ids,
)
from ldmseg.diffusion.merge import merge_panoptic
from ldmseg.diffusion.postprocess import (
    decide,
    labels_at_size,
    log_probabilities_at,
    paint,
    scaled_area,
    segment_infos,
    semantic_from_logits,
    vote_counts,
)
from ldmseg.diffusion.sampling import sample_latents
from ldmseg.diffusion.schedule import make_sampler
from ldmseg.errors import LDMSegError
from ldmseg.models import denoiser as _denoiser  # noqa: F401
from ldmseg.models import depth_autoencoder as _depth_autoencoder  # noqa: F401
from ldmseg.models import image_encoder as _image_encoder  # noqa: F401
from ldmseg.models import mask_autoencoder as _mask_autoencoder  # noqa: F401
from ldmseg.models import original_autoencoder as _original_autoencoder  # noqa: F401
from ldmseg.models import vae_mask_autoencoder as _vae_mask_autoencoder  # noqa: F401
from ldmseg.models.denoiser import task_prediction
from ldmseg.models.layers import native_bf16
from ldmseg.models.mask_autoencoder import resize_probabilities
from ldmseg.pipeline_output import LDMSegOutput, as_pictures
from ldmseg.tasks import TRAINABLE, available_tasks, check_task

# diffusers resolves custom components from sys.modules: importing their modules above lets
# `LDMSegPipeline.from_pretrained` find them.

PRECISIONS = ("fp32", "bf16", "auto")


class LDMSegPipeline(DiffusionPipeline):
    """Components: `unet`, `image_encoder`, `scheduler`, `task_embeddings` and one stage-1 autoencoder per trained
    task (`mask_autoencoder` for instances, `semantic_autoencoder`, `depth_autoencoder`; absent ones None).
    Config: a latent scale per task (`scale_factors`; `scale_factor` is the instances one), the category list
    for semantic / class-aware output, and the serving defaults (`task_num_inference_steps`: a task's own step
    count where it differs from `default_num_inference_steps`, e.g. {"depth": 1}), and `final_x0` (the last
    sampling step returns the model's x0 estimate, as the authors' sampler does, instead of the scheduler's step to
    the schedule's first timestep), `trained_on` (what the model knows, printed by the commands) and `presets`
    (named serving settings, e.g. {"fast": {"num_inference_steps": 20, "precision": "auto"}}), `initial_noise`
    ("gaussian", or "zeros" for a one-step model fine-tuned from the noise's mean: deterministic, diffusion.one_step)."""

    model_cpu_offload_seq = "image_encoder->unet->mask_autoencoder"
    _optional_components = ["mask_autoencoder", "semantic_autoencoder", "depth_autoencoder"]

    def __init__(self, unet, image_encoder, mask_autoencoder, scheduler, task_embeddings, semantic_autoencoder=None,
                 depth_autoencoder=None, scale_factor: float = 1.0, scale_factors: dict | None = None,
                 categories: list | None = None, self_condition: bool = True, default_num_inference_steps: int = 50,
                 default_processing_resolution: int = 512, confidence_threshold: float = 0.5,
                 min_area_at_512: float = 512.0, min_core_at_512: float = 512.0, default_ensemble_size: int = 1,
                 ensemble_min_support: float = 0.25, default_precision: str = "fp32",
                 task_num_inference_steps: dict | None = None, final_x0: bool = False, trained_on: str = "",
                 presets: dict | None = None, initial_noise: str = "gaussian"):
        super().__init__()
        self.register_modules(unet=unet, image_encoder=image_encoder, mask_autoencoder=mask_autoencoder,
                              scheduler=scheduler, task_embeddings=task_embeddings,
                              semantic_autoencoder=semantic_autoencoder, depth_autoencoder=depth_autoencoder)
        self.register_to_config(scale_factor=scale_factor, scale_factors=scale_factors, categories=categories,
                                self_condition=self_condition,
                                default_num_inference_steps=default_num_inference_steps,
                                default_processing_resolution=default_processing_resolution,
                                confidence_threshold=confidence_threshold, min_area_at_512=min_area_at_512,
                                min_core_at_512=min_core_at_512, default_ensemble_size=default_ensemble_size,
                                ensemble_min_support=ensemble_min_support, default_precision=default_precision,
                                task_num_inference_steps=task_num_inference_steps, final_x0=final_x0,
                                trained_on=trained_on, presets=presets, initial_noise=initial_noise)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> LDMSegPipeline:
        """A saved pipeline: 'demo' (the shipped weights), a local directory or a hub id. Weights are read
        from safetensors only (no unpickling), unless `use_safetensors` says otherwise."""
        from ldmseg.models.saved import check_pipeline_dir
        from ldmseg.weights import resolve_pipeline_path

        kwargs.setdefault("use_safetensors", True)
        path = resolve_pipeline_path(str(pretrained_model_name_or_path))
        if isinstance(path, Path):  # a hub id not yet downloaded is checked by diffusers as it arrives
            check_pipeline_dir(path, cls)
        try:
            pipe = super().from_pretrained(path, **kwargs)
        except ValueError as e:  # e.g. a tensor of the wrong shape: diffusers' message does not name the folder
            raise LDMSegError(f"{path}: {str(e).splitlines()[0][:300]}") from None
        return pipe.use_channels_last()

    @classmethod
    def from_original(cls, ldm_file: str, stable_diffusion: str, ae_file: str | None = None, weights: str = "ema"
                      ) -> LDMSegPipeline:
        """The authors' released LDM checkpoint (a torch pickle, read with weights_only) with SD's configuration
        and image encoder, served with their evaluation settings (ldmseg.conversion); `save_pretrained` it once,
        then load the directory."""
        from ldmseg.conversion import pipeline_from_original

        return pipeline_from_original(ldm_file, stable_diffusion, ae_file, weights).use_channels_last()

    def use_channels_last(self) -> LDMSegPipeline:
        """Every network's conv weights in channels_last (NHWC) layout, which from_pretrained does for serving:
        oneDNN's convs then skip a weight reorder per call (the demo at 128^2 on 2 cores: UNet call 58 -> 53 ms,
        mask-AE decode 75 -> 68 ms; the same results to float rounding). Pipelines built around modules being
        trained keep the trainer's layout (it affects the fused optimiser step, so resume stays exact)."""
        for module in self.components.values():
            if isinstance(module, torch.nn.Module):
                module.to(memory_format=torch.channels_last)
        return self

    def serves_bf16(self, precision: str | None = None) -> bool:
        """Whether a call with `precision` (default: the config's default_precision) runs the networks in bf16."""
        precision = precision or self.config.default_precision
        return precision == "bf16" or (precision == "auto" and native_bf16(self.unet.device))

    def keep_unet_in_bf16(self) -> LDMSegPipeline:
        """The UNet's weights cast to bfloat16, for a process that serves bf16 only (the CLI and the app do this
        when their precision is bf16): its float32 copy goes (3.4 GB for SD's UNet), and so do the bf16 copies
        autocast makes of it in every call. Calls then run bf16 whatever their precision says, and asking for
        "fp32" is an error: load the pipeline again for that."""
        self.unet.to(torch.bfloat16)
        return self

    @property
    def trained_tasks(self) -> tuple[str, ...]:
        """The tasks with an embedding and an autoencoder (ldmseg.tasks)."""
        return tuple(t for t in self.task_embeddings.tasks if self.autoencoder(t) is not None)

    @property
    def tasks(self) -> tuple[str, ...]:
        """Everything this model can be asked for: its trained tasks, and `panoptic` when it has instances and
        semantic."""
        return available_tasks(self.trained_tasks)

    def autoencoder(self, task: str) -> torch.nn.Module | None:
        """The stage-1 AE of a trainable task (None if the model has none)."""
        return getattr(self, TRAINABLE[task].component, None) if task in TRAINABLE else None

    @property
    def latent_channels(self) -> int:
        """Channels of the tasks' latents (a model's AEs share them; the UNet predicts a multiple of them when
        it has an output head per task)."""
        for task in self.task_embeddings.tasks:
            if (ae := self.autoencoder(task)) is not None:
                return int(ae.config.get("latent_channels", 4))
        return int(self.unet.config.out_channels)

    def task_scale(self, task: str) -> float:
        scales = self.config.scale_factors or {}
        return float(scales.get(task, self.config.scale_factor if task == "instances" else 1.0))

    @property
    def categories(self) -> list[dict]:
        return list(self.config.categories or [])

    def default_task(self) -> str:
        """`panoptic` (class-aware) where the model can, else its first trained task."""
        return "panoptic" if "panoptic" in self.tasks else self.trained_tasks[0]

    def use_sampler(self, name: str, spacing: str = "trailing") -> None:
        """Swap the scheduler for another diffusers sampler (ddim, dpm++, unipc, euler, ddpm)."""
        self.scheduler = make_sampler(name, self.scheduler.config.prediction_type, spacing)

    def _denoise(self, task: str):
        def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            hidden = self.task_embeddings(task, x.shape[0]).to(x.dtype)
            index = torch.full((x.shape[0],), self.task_embeddings.index(task), device=x.device)
            return task_prediction(self.unet, x, t, hidden, index, channels)
        channels = self.latent_channels
        return denoise

    def default_steps(self, task: str) -> int:
        """The serving step count of a trained task: its own (`task_num_inference_steps`), else the default."""
        own = dict(self.config.task_num_inference_steps or {})
        bad = [f"{t}: {n!r}" for t, n in own.items()
               if t not in TRAINABLE or isinstance(n, bool) or not isinstance(n, int) or n < 1]
        if bad:
            raise LDMSegError(f"task_num_inference_steps in the pipeline config: {', '.join(bad)} (tasks are "
                              f"{', '.join(TRAINABLE)}, counts integers >= 1)")
        return own.get(task, int(self.config.default_num_inference_steps))

    def _sample(self, task: str, z_img: torch.Tensor, steps: int | None, generator: torch.Generator | None,
                progress: bool, known: torch.Tensor | None = None, known_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Clean latents of `task` for the image latents (Algorithm 2 / 3), unscaled for its AE; `steps` None:
        the task's serving step count."""
        steps = steps or self.default_steps(task)
        callback = getattr(self, "_step_callback", None)
        on_step = (lambda i, t: callback(self, i, t, {"task": task})) if callback is not None else None
        z = sample_latents(self._denoise(task), self.scheduler, z_img, self.latent_channels, steps,
                           self.config.self_condition, generator=generator, progress=progress, known=known,
                           known_mask=known_mask, on_step=on_step, final_x0=bool(self.config.get("final_x0", False)),
                           initial_noise=self.config.get("initial_noise", "gaussian"))
        return z / self.task_scale(task)

    @torch.no_grad()
    def __call__(self, image: ImageInput | list[ImageInput], num_inference_steps: int | None = None,
                 processing_resolution: int | None = None, generator: torch.Generator | None = None,
                 output_type: str = "np", return_dict: bool = True, output_logits: bool = False,
                 task: str | None = None, min_area: int | None = None, show_progress: bool = False,
                 partial_mask: np.ndarray | list[np.ndarray] | None = None,
                 valid_mask: np.ndarray | list[np.ndarray] | None = None, mask_rule: str = DEFAULT_MASK_RULE,
                 keep_known: bool = True, ensemble_size: int | None = None, precision: str | None = None,
                 callback_on_step_end: Callable | None = None) -> LDMSegOutput | tuple:
        """Predict `task` for images (default: class-aware `panoptic` where the model can, else its task).

        instances: panoptic ids; with `partial_mask` (HxW ids, 0 = unknown unless `valid_mask` says which
        pixels are given), complete it instead (Algorithm 3), keeping the given ids. semantic: class ids.
        depth: relative depth. panoptic: instances and semantic sampled from the same image latents and merged
        (diffusion.merge). `num_inference_steps` None: each task's serving step count (`default_steps`). With
        `ensemble_size` K > 1 every image is sampled K times: instances keep the sample the others agree with most,
        without the segments fewer than `ensemble_min_support` of the others found (diffusion.ensemble); semantic
        takes a per-pixel vote, depth the per-pixel median (and its spread). `precision` (default: the config's
        default_precision): "bf16" runs the networks under bfloat16 autocast, post-processing stays float32 (faster
        on CPUs with bf16 units and on GPUs; docs/benchmarks.md "bf16 at inference" measures what it changes);
        "auto": bf16 where the device computes it natively. `callback_on_step_end(pipe, step, timestep,
        {"task": ...})` runs after every sampling step of every task, as in diffusers (it may raise to stop the
        call)."""
        task = task or self.default_task()
        check_task(task, self.trained_tasks)
        if partial_mask is not None and task not in ("instances", "panoptic"):
            raise LDMSegError(f"partial_mask (inpainting) completes instance maps; task {task!r} does not take one")
        images = [load_image(im) for im in (image if isinstance(image, (list, tuple)) else [image])]
        steps = num_inference_steps  # None: each task's serving step count (default_steps)
        if steps is not None:
            checks.argument("num_inference_steps", steps, checks.sampling_steps)
        res = checks.argument("processing_resolution", processing_resolution or
                              self.config.default_processing_resolution, checks.resolution)
        k = self.config.default_ensemble_size if ensemble_size is None else ensemble_size
        checks.argument("ensemble_size", k, checks.positive)
        precision = precision or self.config.default_precision
        if precision not in PRECISIONS:
            raise LDMSegError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self._step_callback = callback_on_step_end
        bf16 = self.serves_bf16(precision)
        if self.unet.dtype == torch.bfloat16:  # keep_unet_in_bf16: no float32 weights left to run
            if precision == "fp32":
                raise LDMSegError("precision fp32: this pipeline's UNet holds bf16 weights only (keep_unet_in_bf16); "
                                  "load it again to run in fp32")
            bf16 = True
        try:
            with torch.autocast(self.unet.device.type, torch.bfloat16, enabled=bf16):
                out = self._predict(images, task, steps, res, k, generator, show_progress, partial_mask, valid_mask,
                                    mask_rule, keep_known, min_area, output_logits)
        finally:
            self._step_callback = None
        if output_type == "pil":
            as_pictures(out, self.categories)
        return out if return_dict else out.to_tuple()

    def _predict(self, images: list[ImageInput], task: str, steps: int | None, res: int, k: int,
                 generator: torch.Generator | None, show_progress: bool, partial_mask, valid_mask, mask_rule: str,
                 keep_known: bool, min_area: int | None, output_logits: bool) -> LDMSegOutput:
        """The task's outputs for the images (numpy maps at their sizes)."""
        sizes = [image_size(im) for im in images]
        hints = checked_hints(partial_mask, valid_mask, sizes) if partial_mask is not None else None
        batch = torch.stack([to_processing_size(im, res) for im in images]).to(self.unet.device)
        z_img = self.image_encoder.encode(batch).float().repeat_interleave(k, 0)  # each image's K samples side by side
        fields: dict = {}
        if task in ("instances", "panoptic"):
            (fields["panoptic"], fields["segments_info"], fields["logits"],
             fields["known_agreement"]) = self._instances(z_img, sizes, k, res, steps, generator, show_progress, hints,
                                                          min_area, output_logits, mask_rule, keep_known)
        if task in ("semantic", "panoptic"):
            fields["semantic"] = self._semantic(z_img, sizes, k, res, steps, generator, show_progress)
        if task == "depth":
            fields["depth"], fields["depth_uncertainty"] = self._depth(z_img, sizes, k, res, steps, generator,
                                                                       show_progress)
        if task == "panoptic":
            fields["panoptic"], fields["segments_info"] = self._merge(fields["panoptic"], fields["segments_info"],
                                                                      fields["semantic"], sizes, min_area)
        return LDMSegOutput.of(task, **fields)

    def _instances(self, z_img: torch.Tensor, sizes: list[tuple[int, int]], k: int, res: int, steps: int | None,
                   generator: torch.Generator | None, progress: bool, hints: list | None, min_area: int | None,
                   output_logits: bool, mask_rule: str, keep_known: bool) -> tuple:
        """Instance ids per image: (maps, segments_info, logits or None, known agreement or None)."""
        ae = self.mask_autoencoder
        sizes, hints = _repeat(sizes, k), (_repeat(hints, k) if hints is not None else None)
        known = known_mask = None
        if hints is not None:
            seed = int(torch.randint(0, 2**31, (1,), generator=generator)) if generator is not None else 0
            rng = np.random.default_rng(seed)
            model_ids = [to_model_ids(p, v, ae.num_ids, rng) for p, v in hints]
            known = known_latents(ae, model_ids, res, self.task_scale("instances"), z_img.device)
            valid = torch.from_numpy(np.stack([resize_labels(v, (res, res)) for _, v in hints])).to(z_img.device)
            known_mask = latent_mask(valid, tuple(known.shape[-2:]), mask_rule).to(known.dtype)
        z = self._sample("instances", z_img, steps, generator, progress, known, known_mask)
        probs = resize_probabilities(ae.decode(z), (res, res))
        core = scaled_area(self.config.min_core_at_512, res, res)
        if hints is None:
            return self._instances_at_resolution(probs, sizes, k, min_area, core, output_logits)
        return self._completions(probs, sizes, k, hints, model_ids, min_area, core, output_logits, keep_known)

    def _area_at_res(self, min_area: int | None, size: tuple[int, int], res: int) -> int:
        """The minimum segment area in pixels at res x res: a caller's min_area (input pixels) as the same share."""
        if min_area is None:
            return scaled_area(self.config.min_area_at_512, res, res)
        return round(min_area * res * res / (size[0] * size[1]))

    def _completions(self, probs: torch.Tensor, sizes: list[tuple[int, int]], k: int, hints: list,
                     model_ids: list[np.ndarray], min_area: int | None, core: int, output_logits: bool,
                     keep_known: bool) -> tuple:
        """Inpainting: each sample decided at the processing resolution (given ids exempt from pruning) and matched
        to the hints resized there, the ensemble's choice made there; only the chosen sample is painted at the
        input size, where the given ids are matched again and written back (memory linear in H x W)."""
        res, thr = probs.shape[-1], self.config.confidence_threshold
        panoptic, infos, kept, agreements = [], [], [], []
        for start in range(0, len(sizes), k):
            size, (partial, valid) = sizes[start], hints[start]
            small = resize_labels(partial, (res, res)), resize_labels(valid, (res, res))
            area = self._area_at_res(min_area, size, res)
            decisions, luts, samples = [], [], []
            for i in range(start, start + k):
                decision = decide(probs[i], thr, area, core, given_ids_mask(model_ids[i], probs.shape[1])[0])
                lut = given_id_lut(decision.ids, *small)
                mapped, _ = match_given_ids(decision.ids, *small, keep_known=keep_known, lut=lut)
                decisions.append(decision)
                luts.append(lut)
                samples.append((mapped, segment_infos(mapped)))
            given = set(np.unique(partial[valid]).tolist())
            index, (_, segs) = ensemble(samples, self.config.ensemble_min_support, renumber=False, protected=given)
            survivors = {s["id"] for s in segs}
            keep = {seg for seg, out_id in luts[index].items() if out_id in survivors}
            painted, painted_segs = paint(decisions[index], keep, size, thr)
            ids, agreement = match_given_ids(painted, partial, valid, keep_known=keep_known)
            score = np.zeros(len(painted_segs) + 1, np.float32)
            for s in painted_segs:
                score[s["id"]] = s["score"]
            conf = score[painted]
            conf[(painted == 0) & valid & (partial != 0)] = 1.0  # written back from the user's hint
            panoptic.append(ids)
            infos.append(segment_infos(ids, conf))
            agreements.append(agreement)
            if output_logits:
                kept.append(log_probabilities_at(probs[start + index], size))
        return panoptic, infos, kept or None, agreements

    def _instances_at_resolution(self, probs: torch.Tensor, sizes: list[tuple[int, int]], k: int,
                                 min_area: int | None, core: int, output_logits: bool) -> tuple:
        """Segmentation without given ids: every decision at the processing resolution (pruning, threshold, minimum
        area, the ensemble's choice and its unconfirmed segments), then only the chosen sample's surviving ids are
        painted at the input size, band by band (memory linear in H x W)."""
        res = probs.shape[-1]
        decisions = [decide(lg, self.config.confidence_threshold, self._area_at_res(min_area, size, res), core)
                     for lg, size in zip(probs, sizes, strict=True)]
        panoptic, infos, kept = [], [], []
        for start in range(0, len(decisions), k):
            group = decisions[start:start + k]
            index, (_, segs) = ensemble([(d.ids, d.segments) for d in group], self.config.ensemble_min_support,
                                        renumber=False)
            ids, segments = paint(group[index], {s["id"] for s in segs}, sizes[start],
                                  self.config.confidence_threshold)
            panoptic.append(ids)
            infos.append(segments)
            if output_logits:
                kept.append(log_probabilities_at(probs[start + index], sizes[start]))
        return panoptic, infos, kept or None, None

    def _semantic(self, z_img: torch.Tensor, sizes: list[tuple[int, int]], k: int, res: int, steps: int | None,
                  generator: torch.Generator | None, progress: bool) -> list[np.ndarray]:
        """Class ids per image: argmax at res over the model's classes. One sample: the logits of the classes
        present there upsampled to the input size (band by band). An ensemble votes at res: the per-class vote
        counts of its K samples are upsampled instead, so a pixel takes the class most samples give around it
        (ties: the smallest class id)."""
        z = self._sample("semantic", z_img, steps, generator, progress)
        logits = self.semantic_autoencoder.decode(z, size=(res, res))
        top = max((c["id"] for c in self.categories), default=None)
        labels = semantic_from_logits(logits, top)
        maps = []
        for start, size in zip(range(0, len(logits), k), sizes, strict=True):
            if k == 1:
                present = labels[start].unique()
                stack = logits[start, present].float()
            else:
                stack, present = vote_counts(labels[start:start + k])
            maps.append(labels_at_size(stack, present, size))
        return maps

    def _depth(self, z_img: torch.Tensor, sizes: list[tuple[int, int]], k: int, res: int, steps: int | None,
               generator: torch.Generator | None, progress: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Depth per image: the per-pixel median of its K samples and their median absolute deviation (at res,
        then bilinearly to the input size)."""
        z = self._sample("depth", z_img, steps, generator, progress)
        samples = self.depth_autoencoder.decode(z, size=(res, res))[:, 0].float().clamp(0, 1)
        depths, spreads = [], []
        for i, size in enumerate(sizes):
            group = samples[i * k:(i + 1) * k]
            median = group.quantile(0.5, dim=0)
            mad = (group - median).abs().quantile(0.5, dim=0)
            both = torch.stack([median, mad])[None]
            if tuple(size) != (res, res):
                both = F.interpolate(both, size=size, mode="bilinear", align_corners=False)
            depths.append(both[0, 0].clamp(0, 1).cpu().numpy())
            spreads.append(both[0, 1].clamp(min=0).cpu().numpy())
        return depths, spreads

    def _merge(self, panoptic: list[np.ndarray], infos: list[list[dict]], semantic: list[np.ndarray],
               sizes: list[tuple[int, int]], min_area: int | None) -> tuple[list[np.ndarray], list[list[dict]]]:
        if not self.categories:
            raise LDMSegError("this model has no category list (config 'categories'): it cannot name classes")
        merged = []
        for ids, segs, sem, size in zip(panoptic, infos, semantic, sizes, strict=True):
            area = min_area if min_area is not None else scaled_area(self.config.min_area_at_512, *size)
            scores = {s["id"]: s["score"] for s in segs if "score" in s}
            merged.append(merge_panoptic(ids, sem, self.categories, area, scores))
        return [m[0] for m in merged], [m[1] for m in merged]


def _repeat(items: list, k: int) -> list:
    """Each item k times in a row: [a, b] -> [a, a, b, b] for k = 2."""
    return [item for item in items for _ in range(k)]
