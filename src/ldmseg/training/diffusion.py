"""Stage 2 as a task of the shared loop: the denoiser's loss (Algorithm 1) for one or several tasks
(paper §3.2: a task embedding per task, one UNet), validation by sampling (Algorithm 2), and export as an
`LDMSegPipeline`."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ldmseg.data.datasets import (
    CocoInstancesDataset,
    SampleConfig,
    SemanticFolderDataset,
    SyntheticDataset,
    TaskSampled,
    labelled_folder,
)
from ldmseg.data.synthetic import SceneConfig
from ldmseg.data.synthetic import categories as synthetic_categories
from ldmseg.diffusion.objective import DiffusionObjective, DirectObjective, ObjectiveConfig
from ldmseg.diffusion.one_step import OneStepObjective
from ldmseg.diffusion.schedule import make_sampler
from ldmseg.errors import LDMSegError
from ldmseg.models.layers import same_weights
from ldmseg.models.loading import load_autoencoder
from ldmseg.pipeline import LDMSegPipeline
from ldmseg.tasks import TRAINABLE, parse_tasks
from ldmseg.training.autoencoder import VAL_SEED_OFFSET
from ldmseg.training.config import DiffusionConfig
from ldmseg.training.loop import train
from ldmseg.training.stage2_model import Denoiser, denoiser_from_pipeline, new_denoiser
from ldmseg.training.teacher import TeacherTargets
from ldmseg.training.validation import LogImage, sampled_metrics
from ldmseg.weights import resolve_model_path, resolve_pipeline_path


def image_dataset(source: str, cfg: DiffusionConfig, num_ids: int, seed: int, train: bool,
                  length: int | None = None):
    """The training (or validation) images: synthetic scenes or a folder (labelled; the training set may be
    unlabelled images when a teacher gives the targets)."""
    sample = SampleConfig(size=cfg.size, num_ids=num_ids, hflip=train and cfg.hflip, crowd_to_void=True,
                          crop_scale=cfg.crop_scale if train else 1.0, color_jitter=cfg.color_jitter if train else 0.0)
    if source == "synthetic":
        return SyntheticDataset(SceneConfig.presets(cfg.preset, cfg.size), sample, seed=seed, length=length)
    return labelled_folder(source, sample, seed, train, length, cfg.classes,
                           unlabelled=train and cfg.targets == "teacher")


POSTPROCESS_SETTINGS = ("confidence_threshold", "min_area_at_512", "min_core_at_512")
AE_FLAGS = {"instances": "--ae", "semantic": "--semantic-ae", "depth": "--depth-ae"}
TARGET_KEYS = tuple(spec.target for spec in TRAINABLE.values())  # the dataset keys the tasks' AEs encode


def data_categories(dataset) -> list[dict]:
    """The category list (id, name, isthing, colour) of a training set: synthetic scenes' or the panoptic JSON's."""
    source = getattr(dataset, "source", dataset)
    source = getattr(source, "dataset", source)
    if isinstance(source, (SemanticFolderDataset, CocoInstancesDataset)):
        return source.categories()
    panoptic_set = getattr(source, "set", None)
    if panoptic_set is None:
        return synthetic_categories()
    return [{k: c[k] for k in ("id", "name", "isthing", "color") if k in c} for c in panoptic_set.categories.values()]


def data_description(cfg: DiffusionConfig, dataset) -> str:
    """The `trained_on` text of a model: what its training data was (the CLI prints it when the model is used)."""
    if cfg.data == "synthetic":
        return f"synthetic scenes only ({cfg.preset} preset), not real photographs"
    source = getattr(dataset, "dataset", dataset)
    title = getattr(getattr(source, "classes", None), "title", "")
    return f"{title or Path(cfg.data).name} ({len(dataset)} training images at {cfg.size}x{cfg.size})"


class DiffusionTask:
    """Stage 2 for one or several tasks: each example draws a task, its target is encoded by that task's AE
    and scaled by its s, and the UNet is told the task by its embedding."""

    def __init__(self, cfg: DiffusionConfig):
        self.cfg = cfg
        self.tasks = parse_tasks(cfg.tasks)
        if cfg.objective == "direct" and (tuple(self.tasks) != ("semantic",) or cfg.self_condition_prob > 0
                                          or cfg.prediction_type != "sample"):
            raise LDMSegError("--objective direct (the discriminative baseline) trains --tasks semantic with "
                              "--prediction-type sample and --self-condition-prob 0")
        base = LDMSegPipeline.from_pretrained(resolve_pipeline_path(cfg.init_from)) if cfg.init_from else None
        objective = self.objective(base)
        self.autoencoders = self.load_autoencoders(base)
        ae = next(iter(self.autoencoders.values()))
        d, factor = ae.config.get("latent_channels", 4), ae.config.get("downsample_factor", 8)
        bits = self.autoencoders["instances"].config.num_bits if "instances" in self.autoencoders else 7
        images = image_dataset(cfg.data, cfg, 2**bits, cfg.seed, train=True)
        self.teacher = self.teacher_targets(base)
        self.categories = base.categories if self.teacher else data_categories(images)
        self.trained_on = data_description(cfg, images)
        if self.teacher:
            self.trained_on += f", targets predicted by {cfg.init_from} ({base.config.get('trained_on') or '?'})"
        elif isinstance(images, SemanticFolderDataset) and set(self.tasks) != {"semantic"}:
            raise LDMSegError(f"{cfg.data}: a semantic label set (no instances, no depth); train it with --tasks "
                              "semantic")
        self.val_dataset = image_dataset(cfg.val_data or "synthetic", cfg, 2**bits, cfg.seed + VAL_SEED_OFFSET,
                                         train=False, length=cfg.val_num)
        self.postprocess: dict = {}  # the pipeline defaults, unless a fine-tuned pipeline had its own
        if base is not None:
            self.model = denoiser_from_pipeline(base, cfg, self.tasks, objective)
            self.postprocess = {k: base.config[k] for k in POSTPROCESS_SETTINGS}
        else:
            self.model = new_denoiser(cfg, self.tasks, objective, d, factor)
        weights = cfg.task_weights or (1.0,) * len(self.tasks)
        if len(weights) != len(self.tasks):
            raise LDMSegError(f"--task-weights: {len(weights)} weights for {len(self.tasks)} tasks")
        model_tasks = self.model.task_embeddings.tasks
        self.train_dataset = TaskSampled(images, [model_tasks.index(t) for t in self.tasks], weights, cfg.seed)
        self.scales = self.latent_scales(base)
        if cfg.objective == "direct":
            self.model.objective = DirectObjective(self.autoencoders["semantic"], self.scales["semantic"])
        if isinstance(self.model.objective, OneStepObjective):
            self.model.objective.attach(self.autoencoders, self.scales)

    def teacher_targets(self, base: LDMSegPipeline | None) -> TeacherTargets | None:
        """--targets teacher: a frozen copy of the --init-from model predicts every training target."""
        if self.cfg.targets != "teacher":
            return None
        if self.cfg.objective != "one-step":
            raise LDMSegError("--targets teacher distils a model: use it with --objective one-step")
        teacher = LDMSegPipeline.from_pretrained(resolve_pipeline_path(self.cfg.init_from))
        return TeacherTargets(teacher, base.task_embeddings.with_tasks(self.tasks).tasks, self.cfg.size)

    def objective(self, base: LDMSegPipeline | None) -> DiffusionObjective | OneStepObjective:
        """The training loss: denoising (the paper), or one-step fine-tuning of a trained model's denoiser."""
        cfg = self.cfg
        if cfg.objective == "one-step":
            if base is None:
                raise LDMSegError("--objective one-step fine-tunes a trained model: give --init-from MODEL")
            return OneStepObjective(bool(base.config.self_condition), instance_ids=self.cfg.instance_ids)
        return DiffusionObjective(ObjectiveConfig(cfg.prediction_type, cfg.loss_weighting, cfg.snr_gamma,
                                                  cfg.self_condition_prob, cfg.mask_void, cfg.reduction))

    def load_autoencoders(self, base: LDMSegPipeline | None) -> dict[str, nn.Module]:
        """One frozen AE per task of the model: --ae / --semantic-ae / --depth-ae, else the --init-from pipeline's."""
        cfg = self.cfg
        flags = {"instances": cfg.ae, "semantic": cfg.semantic_ae, "depth": cfg.depth_ae}
        kept = base.trained_tasks if base is not None else ()
        out = {}
        for task in dict.fromkeys((*kept, *self.tasks)):
            if flags[task] and (task in self.tasks or TRAINABLE[task].primary):
                spec = TRAINABLE[task]  # 'demo' names the demo pipeline's AE of this task
                out[task] = load_autoencoder(resolve_model_path(flags[task], spec.component), spec.kind)
            elif base is not None and base.autoencoder(task) is not None:
                out[task] = base.autoencoder(task)
            else:
                raise LDMSegError(f"task {task} needs its autoencoder: pass {AE_FLAGS[task]} DIR")
        shapes = {(a.config.get("latent_channels", 4), a.config.get("downsample_factor", 8)) for a in out.values()}
        if len(shapes) > 1:
            raise LDMSegError(f"the tasks' autoencoders disagree on (latent channels, downsampling): {sorted(shapes)}")
        return {t: a.requires_grad_(False).eval() for t, a in out.items()}

    def latent_scales(self, base: LDMSegPipeline | None) -> dict[str, float]:
        """s per task: --scale-factor (instances), the --init-from pipeline's where its AE is the one used,
        else 1 / std of the AE's latents on training targets (the paper's s, set from the data)."""
        scales = {}
        for task, ae in self.autoencoders.items():
            own = base.autoencoder(task) if base is not None else None
            if TRAINABLE[task].primary and self.cfg.scale_factor:
                scales[task] = self.cfg.scale_factor
            elif own is not None and (own is ae or same_weights(own, ae)):
                scales[task] = base.task_scale(task)
            else:
                scales[task] = self.latent_scale(task)
        return scales

    @torch.no_grad()
    def latent_scale(self, task: str, num: int = 64) -> float:
        items = [self.train_dataset.source[(i, i)] for i in range(num)]
        batch = {k: torch.stack([it[k] for it in items]) for k in items[0] if k != "task"}
        return float(1.0 / self.encode(task, batch).std())

    def encode(self, task: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Unscaled latents of the batch's targets for `task`."""
        spec = TRAINABLE[task]
        if spec.target not in batch:
            raise LDMSegError(f"task {task}: the training data has no {spec.target} maps")
        target = batch[spec.target]
        ae = self.autoencoders[task].to(target.device)
        if spec.kind == "depth":
            return ae.encode_depth(target)
        if int(target.max()) >= ae.num_ids:
            raise LDMSegError(f"task {task}: label {int(target.max())} does not fit the AE's {ae.num_ids} ids")
        return ae.encode_ids(target)

    @staticmethod
    def valid_pixels(task: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pixels the loss counts (VOID / ignore masked out); depth is defined everywhere."""
        spec = TRAINABLE[task]
        if spec.kind == "depth":
            return torch.ones_like(batch[spec.target], dtype=torch.bool)
        return batch[spec.target] != 0

    def objective_labels(self, batch: dict[str, torch.Tensor]) -> dict:
        """What the objective reads beside the latents: the label map (direct) or the target maps (one-step)."""
        if self.cfg.objective == "direct":
            return {"labels": batch["semantic"]}
        if self.cfg.objective == "one-step":
            return {"labels": {k: v for k, v in batch.items() if k in TARGET_KEYS}}
        return {}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        model_tasks = getattr(model, "module", model).task_embeddings.tasks
        task_ids = batch["task"]
        z0, valid = None, torch.ones(batch["image"].shape[:1] + batch["image"].shape[2:], dtype=torch.bool,
                                     device=task_ids.device)
        if self.cfg.objective == "one-step":  # no latent targets: the losses are taken on the decoded maps
            if self.teacher is not None:
                batch = self.teacher(batch)
            image = batch["image"]
            factor = next(iter(self.autoencoders.values())).config.get("downsample_factor", 8)
            d = getattr(model, "module", model).latent_channels
            z0 = image.new_zeros((len(image), d, image.shape[-2] // factor, image.shape[-1] // factor))
            loss, logs = model(image, z0, valid, task_ids, **self.objective_labels(batch))
            logs.update({f"share/{t}": float((task_ids == model_tasks.index(t)).float().mean()) for t in self.tasks})
            return loss, logs
        with torch.no_grad():
            for k, task in enumerate(model_tasks):
                sel = task_ids == k
                if not sel.any():
                    continue
                part = {key: v[sel] for key, v in batch.items() if key in TARGET_KEYS}
                z = self.encode(task, part) * self.scales[task]
                z0 = z.new_zeros((len(task_ids), *z.shape[1:])) if z0 is None else z0
                z0[sel] = z.to(z0.dtype)
                valid[sel] = self.valid_pixels(task, part)
        loss, logs = model(batch["image"], z0, valid, task_ids, **self.objective_labels(batch))
        if len(self.tasks) > 1:
            logs.update({f"share/{t}": float((task_ids == model_tasks.index(t)).float().mean()) for t in self.tasks})
        return loss, logs

    def pipeline(self, model: Denoiser) -> LDMSegPipeline:
        cfg = self.cfg
        aes = self.autoencoders
        return LDMSegPipeline(model.unet, model.image_encoder, aes.get("instances"),
                              make_sampler(cfg.sampler, self.prediction_type, cfg.timestep_spacing),
                              model.task_embeddings, semantic_autoencoder=aes.get("semantic"),
                              depth_autoencoder=aes.get("depth"), scale_factor=self.scales.get("instances", 1.0),
                              scale_factors=self.scales, categories=self.categories,
                              self_condition=model.objective.self_condition,
                              default_num_inference_steps=1 if cfg.objective != "diffusion" else cfg.inference_steps,
                              default_processing_resolution=cfg.size, final_x0=cfg.objective != "diffusion",
                              trained_on=self.trained_on, initial_noise=self.initial_noise,
                              **self.postprocess)

    @property
    def prediction_type(self) -> str:
        """What the UNet outputs: the one-step and direct objectives train it to give x0 ('sample') whatever
        --prediction-type says; the diffusion objective, --prediction-type."""
        return self.cfg.prediction_type if self.cfg.objective == "diffusion" else "sample"

    @property
    def initial_noise(self) -> str:
        """'zeros' for a one-step model (it was trained on the noise's mean), else 'gaussian'."""
        return "zeros" if self.cfg.objective == "one-step" else "gaussian"

    def validate(self, model: nn.Module, step: int, log_image: LogImage) -> dict[str, float]:
        """A metric per trained task on held-out scenes: PQ (instances), mIoU (semantic), RMSE (depth)."""
        pipe = self.pipeline(model)
        metrics: dict[str, float] = {}
        for task in self.tasks:
            steps = self.cfg.val_steps if self.cfg.objective == "diffusion" else 1
            metrics.update(sampled_metrics(pipe, self.val_dataset, task, steps, step=step,
                                           log_image=log_image))
        return metrics

    def save_model(self, model: nn.Module, directory: Path) -> None:
        self.pipeline(model).save_pretrained(directory)


def train_diffusion(cfg: DiffusionConfig) -> Path:
    return train(cfg, DiffusionTask)
