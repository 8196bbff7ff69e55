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

from ldmseg.data.images import ImageInput, image_size, load_image, to_processing_size
from ldmseg.data.transforms import resize_labels
from ldmseg.diffusion.inpainting import (
    checked_hints,
    known_latents,
    latent_mask,
    to_model_ids,
)
from ldmseg.diffusion.merge import merge_panoptic
from ldmseg.diffusion.postprocess import (
    labels_at_size,
    scaled_area,
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
from ldmseg.pipeline_call import PipelineCall, check_generators, check_memory, repeat_each
from ldmseg.pipeline_instances import InstanceRules, completions, instances_at_resolution
from ldmseg.pipeline_output import LDMSegOutput, as_pictures
from ldmseg.serving import ServingConfig, resolve_serving
from ldmseg.tasks import TRAINABLE, available_tasks, check_task, task_spec

# diffusers resolves custom components from sys.modules: importing their modules above lets
# `LDMSegPipeline.from_pretrained` find them.

class LDMSegPipeline(DiffusionPipeline):
    """Components: `unet`, `image_encoder`, `scheduler`, `task_embeddings` and one stage-1 autoencoder per trained
    task (`mask_autoencoder` for instances, `semantic_autoencoder`, `depth_autoencoder`; absent ones None).
    Config: a latent scale per task (`scale_factors`; `scale_factor` is the instances one), the category list
    for semantic / class-aware output, and the serving defaults (`task_num_inference_steps`: a task's own step
    count where it differs from `default_num_inference_steps`, e.g. {"depth": 1}), and `final_x0` (the last
    sampling step returns the model's x0 estimate, as the authors' sampler does, instead of the scheduler's step to
    the schedule's first timestep), `trained_on` (what the model knows, printed by the commands) and `presets`
    (named serving settings, e.g. {"fast": {"num_inference_steps": 20, "precision": "auto"}}), `initial_noise`
    ("gaussian", or "zeros" for a one-step model fine-tuned from the noise's mean, diffusion.one_step)."""

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
        from ldmseg.conversion import original_components

        return cls(**original_components(ldm_file, stable_diffusion, ae_file, weights)).use_channels_last()

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
        # nn.Module.to, not ModelMixin.to: diffusers' wrapper warns about float32 modules on every cast, even when
        # the list is empty (ours is), a warning no user can act on
        torch.nn.Module.to(self.unet, torch.bfloat16)
        return self

    def to(self, *args, **kwargs) -> LDMSegPipeline:
        """diffusers' `to` (device and/or dtype); float16 on a CPU is refused here in one line, not later inside a
        call (CPUs run bf16: keep float32 weights and pass precision="bf16")."""
        dtype = kwargs.get("dtype") or next((a for a in args if isinstance(a, torch.dtype)), None)
        device = kwargs.get("device") or next((a for a in args if isinstance(a, (str, torch.device))), None)
        target = torch.device(device) if device is not None else self.unet.device
        if dtype == torch.float16 and target.type == "cpu":
            raise LDMSegError("float16 weights do not run on a CPU: keep float32 and call with precision='bf16', or "
                              "move the pipeline to a GPU first (pipe.to('cuda', torch.float16))")
        return super().to(*args, **kwargs)

    def compute_dtype(self, precision: str) -> torch.dtype | None:
        """The autocast dtype of a call: half-precision weights run in their own dtype; otherwise `precision`
        (fp16, bf16, or auto = bf16 where the device has it natively); None: float32."""
        if self.unet.dtype in (torch.float16, torch.bfloat16):
            return self.unet.dtype
        if precision == "fp16":
            return torch.float16
        return torch.bfloat16 if self.serves_bf16(precision) else None

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
        return float(scales.get(task, self.config.scale_factor if task_spec(task).primary else 1.0))

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

    def serving_config(self, preset: str | None = None, **settings) -> ServingConfig:
        """The settings a call runs with: this model's config <- its named `preset` <- `settings` (None = not
        given), checked once (ldmseg.serving). Commands resolve it once per run and pass it to every call."""
        return resolve_serving(self.config, self.trained_tasks, self.default_task(), preset, **settings)

    def check_inputs(self, image, serving: ServingConfig, partial_mask, valid_mask, generator) -> list[ImageInput]:
        """The call's images, loaded and checked (ldmseg.data.images), and everything else it was given that
        depends on them: inpainting hints only for tasks that inpaint, one generator or one per image."""
        check_task(serving.task, self.trained_tasks)
        images = [load_image(im) for im in (image if isinstance(image, (list, tuple)) else [image])]
        if not images:
            raise LDMSegError("no image given")
        if partial_mask is not None and not task_spec(serving.task).inpaints:
            raise LDMSegError(f"partial_mask (inpainting) completes instance maps; task {serving.task!r} does not "
                              "take one")
        check_generators(generator, len(images))
        check_memory(len(images), serving)
        if self.unet.dtype == torch.bfloat16 and serving.precision == "fp32":
            raise LDMSegError("precision fp32: this pipeline's UNet holds bf16 weights only (keep_unet_in_bf16); "
                              "load it again to run in fp32")
        if self.unet.device.type == "cpu" and torch.float16 in (self.unet.dtype, self.compute_dtype(serving.precision)):
            raise LDMSegError("float16 does not run on a CPU: use precision bf16 or fp32 (fp16 is for GPUs)")
        return images

    def _autocast(self, precision: str):
        """Half-precision autocast for the networks when the call runs in one (post-processing stays float32)."""
        dtype = self.compute_dtype(precision)
        return torch.autocast(self.unet.device.type, dtype or torch.bfloat16, enabled=dtype is not None)

    def _scheduler(self, serving: ServingConfig):
        """The call's sampler: the model's scheduler, or a fresh one of `serving.sampler` (the pipeline's own is
        never replaced by a call)."""
        if serving.sampler is None:
            return self.scheduler
        return make_sampler(serving.sampler, self.scheduler.config.prediction_type, "trailing")

    def _sample(self, task: str, z_img: torch.Tensor, call: PipelineCall, known: torch.Tensor | None = None,
                known_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Clean latents of `task` for the image latents (Algorithm 2 / 3), unscaled for its AE."""
        steps = call.serving.num_inference_steps or self.default_steps(task)
        callback = call.on_step
        on_step = (lambda i, t: callback(self, i, t, {"task": task})) if callback is not None else None
        z = sample_latents(self._denoise(task), call.scheduler, z_img, self.latent_channels, steps,
                           self.config.self_condition, generator=call.noise_generator(), progress=call.progress,
                           known=known, known_mask=known_mask, on_step=on_step,
                           final_x0=bool(self.config.get("final_x0", False)),
                           initial_noise=self.config.get("initial_noise", "gaussian"))
        return z / self.task_scale(task)

    @torch.no_grad()
    def __call__(self, image: ImageInput | list[ImageInput], num_inference_steps: int | None = None,
                 processing_resolution: int | None = None,
                 generator: torch.Generator | list[torch.Generator] | None = None, output_type: str | None = None,
                 return_dict: bool = True, output_logits: bool = False, task: str | None = None,
                 min_area: int | None = None, show_progress: bool = False,
                 partial_mask: np.ndarray | list[np.ndarray] | None = None,
                 valid_mask: np.ndarray | list[np.ndarray] | None = None, mask_rule: str | None = None,
                 keep_known: bool | None = None, ensemble_size: int | None = None, precision: str | None = None,
                 callback_on_step_end: Callable | None = None, sampler: str | None = None,
                 confidence_threshold: float | None = None, preset: str | None = None,
                 serving: ServingConfig | None = None) -> LDMSegOutput | tuple:
        """Predict `task` for images (default: class-aware `panoptic` where the model can, else its task).

        Images: paths, 8-bit PIL images, HxW[x3|4] arrays (uint8 in 0..255, or float in [0, 1]) or [3, H, W] float
        tensors in [-1, 1], or a list of them; any other dtype or range, and NaN, is one line (ldmseg.data.images).
        instances: panoptic ids; with `partial_mask` (HxW ids, 0 = unknown unless `valid_mask` says which pixels are
        given), complete it instead (Algorithm 3), keeping the given ids. semantic: class ids. depth: relative depth.
        panoptic: instances and semantic sampled from the same image latents and merged (diffusion.merge).

        Settings (ldmseg.serving; None = the model's): `num_inference_steps` (None: each task's own count),
        `sampler`, `processing_resolution`, `ensemble_size` K (K > 1: instances keep the sample the others agree
        with most, without segments fewer than `ensemble_min_support` of the others found; semantic takes a
        per-pixel vote, depth the per-pixel median and its spread), `precision` ("bf16": the networks under
        bfloat16 autocast; "auto": bf16 where the device computes it natively), `confidence_threshold`,
        `min_area` (pixels at the input size), `mask_rule`, `keep_known`, `output_type` ("np" or "pil"), a named
        `preset` of the model, or a whole resolved `serving` config (`serving_config()`) that the other settings
        override. `generator`: one torch.Generator, or one per image. `callback_on_step_end(pipe, step, timestep,
        {"task": ...})` runs after every sampling step of every task, as in diffusers (it may raise to stop)."""
        settings = dict(task=task, num_inference_steps=num_inference_steps, sampler=sampler,
                        processing_resolution=processing_resolution, ensemble_size=ensemble_size, precision=precision,
                        confidence_threshold=confidence_threshold, min_area=min_area, mask_rule=mask_rule,
                        keep_known=keep_known, output_type=output_type)
        serving = self.serving_config(preset, **settings) if serving is None else serving.replace(**settings)
        images = self.check_inputs(image, serving, partial_mask, valid_mask, generator)
        call = PipelineCall(serving, [image_size(im) for im in images], self._scheduler(serving), generator,
                            show_progress, callback_on_step_end, output_logits)
        if partial_mask is not None:
            call.hints = checked_hints(partial_mask, valid_mask, call.sizes)
        with self._autocast(serving.precision):
            z_img = self.encode_images(images, serving)
            out = self._predict(z_img, call)
        if serving.output_type == "pil":
            as_pictures(out, self.categories)
        return out if return_dict else out.to_tuple()

    def encode_images(self, images: list[ImageInput], serving: ServingConfig) -> torch.Tensor:
        """f_i latents of the images at the processing resolution, each repeated for its K ensemble samples."""
        res = serving.processing_resolution
        batch = torch.stack([to_processing_size(im, res) for im in images]).to(self.unet.device)
        return self.image_encoder.encode(batch).float().repeat_interleave(serving.ensemble_size, 0)

    def _predict(self, z_img: torch.Tensor, call: PipelineCall) -> LDMSegOutput:
        """The task's outputs (numpy maps at the images' sizes): each of its parts sampled, then merged."""
        spec = task_spec(call.serving.task)
        parts = {"instances": self._instances, "semantic": self._semantic, "depth": self._depth}
        fields: dict = {}
        for part in spec.parts:
            fields.update(parts[part](z_img, call))
        if spec.class_aware:
            fields["panoptic"], fields["segments_info"] = self._merge(fields, call)
        return LDMSegOutput.of(spec.name, **fields)

    def _instances(self, z_img: torch.Tensor, call: PipelineCall) -> dict:
        """Instance ids per image: panoptic maps, segments_info, logits (or None), known agreement (or None)."""
        ae, k, res = self.mask_autoencoder, call.serving.ensemble_size, call.serving.processing_resolution
        known = known_mask = model_ids = None
        if call.hints is not None:
            hints = repeat_each(call.hints, k)
            rngs = repeat_each(call.hint_rngs(), k)
            model_ids = [to_model_ids(p, v, ae.num_ids, rng) for (p, v), rng in zip(hints, rngs, strict=True)]
            known = known_latents(ae, model_ids, res, self.task_scale("instances"), z_img.device)
            valid = torch.from_numpy(np.stack([resize_labels(v, (res, res)) for _, v in hints])).to(z_img.device)
            known_mask = latent_mask(valid, tuple(known.shape[-2:]), call.serving.mask_rule).to(known.dtype)
        z = self._sample("instances", z_img, call, known, known_mask)
        probs = resize_probabilities(ae.decode(z), (res, res)).cpu()  # the decisions below run on the CPU
        rules = InstanceRules.of(self.config)
        if call.hints is None:
            maps, infos, logits = instances_at_resolution(probs, call, rules)
            agreements = None
        else:
            maps, infos, logits, agreements = completions(probs, call, model_ids, rules)
        return {"panoptic": maps, "segments_info": infos, "logits": logits, "known_agreement": agreements}

    def _semantic(self, z_img: torch.Tensor, call: PipelineCall) -> dict:
        """Class ids per image: argmax at res over the model's classes. One sample: the logits of the classes
        present there upsampled to the input size (band by band). An ensemble votes at res: the per-class vote
        counts of its K samples are upsampled instead, so a pixel takes the class most samples give around it
        (ties: the smallest class id)."""
        k, res = call.serving.ensemble_size, call.serving.processing_resolution
        z = self._sample("semantic", z_img, call)
        logits = self.semantic_autoencoder.decode(z, size=(res, res))
        top = max((c["id"] for c in self.categories), default=None)
        labels = semantic_from_logits(logits, top)
        maps = []
        for start, size in zip(range(0, len(logits), k), call.sizes, strict=True):
            if k == 1:
                present = labels[start].unique()
                stack = logits[start, present].float()
            else:
                stack, present = vote_counts(labels[start:start + k])
            maps.append(labels_at_size(stack, present, size))
        return {"semantic": maps}

    def _depth(self, z_img: torch.Tensor, call: PipelineCall) -> dict:
        """Depth per image: the per-pixel median of its K samples and their median absolute deviation (at res,
        then bilinearly to the input size)."""
        k, res = call.serving.ensemble_size, call.serving.processing_resolution
        z = self._sample("depth", z_img, call)
        samples = self.depth_autoencoder.decode(z, size=(res, res))[:, 0].float().clamp(0, 1)
        depths, spreads = [], []
        for i, size in enumerate(call.sizes):
            group = samples[i * k:(i + 1) * k]
            median = group.quantile(0.5, dim=0)
            mad = (group - median).abs().quantile(0.5, dim=0)
            both = torch.stack([median, mad])[None]
            if tuple(size) != (res, res):
                both = F.interpolate(both, size=size, mode="bilinear", align_corners=False)
            depths.append(both[0, 0].clamp(0, 1).cpu().numpy())
            spreads.append(both[0, 1].clamp(min=0).cpu().numpy())
        return {"depth": depths, "depth_uncertainty": spreads}

    def _merge(self, fields: dict, call: PipelineCall) -> tuple[list[np.ndarray], list[list[dict]]]:
        """Class-aware panoptic maps: each image's instances merged with its semantic map (diffusion.merge)."""
        if not self.categories:
            raise LDMSegError("this model has no category list (config 'categories'): it cannot name classes")
        merged = []
        hints = call.hints or [None] * len(call.sizes)
        for ids, segs, sem, size, hint in zip(fields["panoptic"], fields["segments_info"], fields["semantic"],
                                              call.sizes, hints, strict=True):
            min_area = call.serving.min_area
            area = min_area if min_area is not None else scaled_area(self.config.min_area_at_512, *size)
            scores = {s["id"]: s["score"] for s in segs if "score" in s}
            given = frozenset(np.unique(hint[0][hint[1]]).tolist()) - {0} if hint is not None else frozenset()
            merged.append(merge_panoptic(ids, sem, self.categories, area, scores, given=given))
        return [m[0] for m in merged], [m[1] for m in merged]
