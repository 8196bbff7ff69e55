"""Stage 2 as a task of the shared loop: the denoiser's loss (Algorithm 1) for one or several tasks
(paper §3.2: a task embedding per task, one UNet), validation by sampling (Algorithm 2), and export as an
`LDMSegPipeline`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
from ldmseg.diffusion.postprocess import logits_to_panoptic, scaled_area
from ldmseg.diffusion.schedule import make_sampler
from ldmseg.errors import LDMSegError
from ldmseg.metrics.panoptic import PanopticEvaluator, segments_from_ids
from ldmseg.models.denoiser import (
    TaskEmbeddings,
    add_task_heads,
    add_task_time_embedding,
    build_unet,
    bypass_cross_attention,
    load_pretrained_unet,
    task_prediction,
    widen_conv_in,
)
from ldmseg.models.image_encoder import LearnedImageEncoder, SDVAEImageEncoder, ViTImageEncoder
from ldmseg.models.layers import same_weights
from ldmseg.models.loading import load_autoencoder
from ldmseg.pipeline import LDMSegPipeline
from ldmseg.tasks import TRAINABLE, parse_tasks
from ldmseg.training.autoencoder import VAL_SEED_OFFSET
from ldmseg.training.config import DiffusionConfig
from ldmseg.training.loop import train
from ldmseg.training.validation import LogImage, agnostic_pq, depth_scores, semantic_scores
from ldmseg.weights import resolve_model_path, resolve_pipeline_path


def image_dataset(source: str, cfg: DiffusionConfig, num_ids: int, seed: int, train: bool,
                  length: int | None = None):
    sample = SampleConfig(size=cfg.size, num_ids=num_ids, hflip=train and cfg.hflip, crowd_to_void=True)
    if source == "synthetic":
        return SyntheticDataset(SceneConfig.presets(cfg.preset, cfg.size), sample, seed=seed, length=length)
    return labelled_folder(source, sample, seed, train, length, cfg.classes)


def build_image_encoder(cfg: DiffusionConfig, factor: int) -> nn.Module:
    if cfg.image_encoder == "sd-vae":
        if not cfg.pretrained_vae:
            raise LDMSegError("--image-encoder sd-vae needs --pretrained-vae DIR|HUB_ID")
        return SDVAEImageEncoder.from_sd_vae(cfg.pretrained_vae)
    if cfg.image_encoder == "vit":
        if not cfg.pretrained_vit:
            raise LDMSegError("--image-encoder vit needs --pretrained-vit DIR|HUB_ID of a transformers ViT")
        return ViTImageEncoder.from_vit(cfg.pretrained_vit, cfg.image_channels, factor)
    if cfg.image_encoder != "learned":
        raise LDMSegError(f"unknown --image-encoder {cfg.image_encoder!r} (learned | sd-vae | vit)")
    return LearnedImageEncoder(cfg.image_channels, factor, tuple(cfg.image_encoder_channels))


class Denoiser(nn.Module):
    """The trainable part of stage 2 (UNet, image encoder, task tokens); forward = the training loss,
    so that DDP sees one forward per step.

    With `task_balance` > 0 (several tasks), each example's loss is divided by its task's running mean loss (an
    EMA of that momentum, kept as a buffer so that checkpoints resume it exactly): every task then trains at one
    loss scale, instead of the task with the largest (noisiest) loss filling Adam's second moments. The tasks'
    shares of examples are unchanged, so the compute per task is too. Measured in Table 3 (docs/benchmarks.md): on
    the synthetic scenes semantic has the largest loss and depth the smallest, so it weights depth up, and it scored
    below plain multi-task training; it is not the default."""

    def __init__(self, unet: nn.Module, image_encoder: nn.Module, task_embeddings: TaskEmbeddings,
                 objective: DiffusionObjective, latent_channels: int, task_balance: float = 0.0):
        super().__init__()
        self.unet, self.image_encoder, self.task_embeddings = unet, image_encoder, task_embeddings
        self.objective, self.latent_channels = objective, latent_channels
        self.task_balance = task_balance if len(task_embeddings.tasks) > 1 else 0.0
        if self.task_balance:
            self.register_buffer("task_loss_mean", torch.zeros(len(task_embeddings.tasks)))

    def forward(self, images: torch.Tensor, z0: torch.Tensor, valid: torch.Tensor, tasks: torch.Tensor,
                labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """tasks: [B] index of each example's task embedding (its target latent is z0's row); labels: the label
        map (direct objective) or the target maps by key (one-step objective)."""
        z_img = self.image_encoder.encode(images)
        tokens = self.task_embeddings(tasks)
        names = self.task_embeddings.tasks
        one_step = isinstance(self.objective, OneStepObjective)
        groups = {name: tasks == k for k, name in enumerate(names)} if len(names) > 1 or one_step else None
        denoise = lambda x, t: task_prediction(self.unet, x, t, tokens, tasks, self.latent_channels)  # noqa: E731
        extra = {"labels": labels} if isinstance(self.objective, (DirectObjective, OneStepObjective)) else {}
        loss, logs = self.objective(denoise, z0, z_img, valid, groups, self.balance_weights(tasks), **extra)
        if self.task_balance and self.training:
            self.update_task_loss_mean(logs)
        return loss, logs

    def balance_weights(self, tasks: torch.Tensor) -> torch.Tensor | None:
        """[B] factors mean(batch's running means) / its task's running mean; None until every task has one."""
        if not self.task_balance or not bool((self.task_loss_mean > 0).all()):
            return None
        per_example = self.task_loss_mean.to(tasks.device)[tasks]
        return per_example.mean() / per_example

    @torch.no_grad()
    def update_task_loss_mean(self, logs: dict[str, float]) -> None:
        """Fold the batch's per-task mean losses (the objective's `loss/<task>` logs) into the running means."""
        names = self.task_embeddings.tasks
        for k, name in enumerate(names):
            seen = logs.get(f"loss/{name}")
            if seen is None or not seen > 0:
                continue
            old = float(self.task_loss_mean[k])
            self.task_loss_mean[k] = seen if old == 0 else self.task_balance * old + (1 - self.task_balance) * seen
        logs.update({f"balance/{name}": float(self.task_loss_mean[k]) for k, name in enumerate(names)})


POSTPROCESS_SETTINGS = ("confidence_threshold", "min_area_at_512", "min_core_at_512")
AE_FLAGS = {"instances": "--ae", "semantic": "--semantic-ae", "depth": "--depth-ae"}


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
        self.categories = data_categories(images)
        self.trained_on = data_description(cfg, images)
        if isinstance(images, SemanticFolderDataset) and set(self.tasks) != {"semantic"}:
            raise LDMSegError(f"{cfg.data}: a semantic label set (no instances, no depth); train it with --tasks "
                              "semantic")
        self.val_dataset = image_dataset(cfg.val_data or "synthetic", cfg, 2**bits, cfg.seed + VAL_SEED_OFFSET,
                                         train=False, length=cfg.val_num)
        self.postprocess: dict = {}  # the pipeline defaults, unless a fine-tuned pipeline had its own
        if base is not None:
            self.model = self.from_pipeline(base, objective)
            self.postprocess = {k: base.config[k] for k in POSTPROCESS_SETTINGS}
        else:
            self.model = self.new_model(objective, d, factor)
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

    def objective(self, base: LDMSegPipeline | None) -> DiffusionObjective | OneStepObjective:
        """The training loss: denoising (the paper), or one-step fine-tuning of a trained model's denoiser."""
        cfg = self.cfg
        if cfg.objective == "one-step":
            if base is None:
                raise LDMSegError("--objective one-step fine-tunes a trained model: give --init-from MODEL")
            return OneStepObjective(bool(base.config.self_condition))
        return DiffusionObjective(ObjectiveConfig(cfg.prediction_type, cfg.loss_weighting, cfg.snr_gamma,
                                                  cfg.self_condition_prob, cfg.mask_void, cfg.reduction))

    def load_autoencoders(self, base: LDMSegPipeline | None) -> dict[str, nn.Module]:
        """One frozen AE per task of the model: --ae / --semantic-ae / --depth-ae, else the --init-from pipeline's."""
        cfg = self.cfg
        flags = {"instances": cfg.ae, "semantic": cfg.semantic_ae, "depth": cfg.depth_ae}
        kept = base.trained_tasks if base is not None else ()
        out = {}
        for task in dict.fromkeys((*kept, *self.tasks)):
            if flags[task] and (task in self.tasks or task == "instances"):
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

    def new_model(self, objective: DiffusionObjective, d: int, factor: int) -> Denoiser:
        cfg = self.cfg
        image_encoder = build_image_encoder(cfg, factor)
        in_channels = d + image_encoder.out_channels + (d if objective.self_condition else 0)
        if cfg.pretrained_unet:
            unet = load_pretrained_unet(cfg.pretrained_unet, in_channels)
        else:
            unet = build_unet(cfg.unet, in_channels, d, cfg.size // factor)
        if unet.config.out_channels != d:
            raise LDMSegError(f"the UNet predicts {unet.config.out_channels} channels, the AEs have {d}")
        if cfg.conditioning == "none":
            if len(self.tasks) > 1:
                raise LDMSegError("--conditioning none bypasses the task embeddings: it needs a single task")
            bypass_cross_attention(unet)
        elif cfg.conditioning == "task-embedding+time":
            add_task_time_embedding(unet, len(self.tasks))
        elif cfg.conditioning != "task-embedding":
            raise LDMSegError(f"unknown --conditioning {cfg.conditioning!r} (task-embedding | task-embedding+time "
                              "| none)")
        if cfg.task_heads:
            add_task_heads(unet, len(self.tasks), d)
        if cfg.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        tokens = TaskEmbeddings(self.tasks, cfg.task_tokens, unet.config.cross_attention_dim)
        return Denoiser(unet, image_encoder, tokens, objective, d, cfg.task_balance)

    def from_pipeline(self, pipe: LDMSegPipeline, objective: DiffusionObjective) -> Denoiser:
        """The trainable parts of a saved pipeline (fine-tuning), with an embedding added for each new task."""
        if pipe.config.self_condition and not objective.self_condition:
            raise LDMSegError(f"{self.cfg.init_from}: this model is self-conditioned; fine-tune it with "
                              "--self-condition-prob > 0")
        if objective.self_condition and not pipe.config.self_condition:
            # the self-conditioning estimate is conv_in's last input: zero kernels leave the model unchanged at step 0
            widen_conv_in(pipe.unet, pipe.unet.config.in_channels + pipe.latent_channels)
        tokens = pipe.task_embeddings.with_tasks(self.tasks)
        if self.cfg.conditioning == "task-embedding+time" or pipe.unet.class_embedding is not None:
            add_task_time_embedding(pipe.unet, len(tokens.tasks))  # a new task's (or path's) vectors start at 0
        d = pipe.latent_channels
        if self.cfg.task_heads or pipe.unet.config.out_channels > d:
            add_task_heads(pipe.unet, len(tokens.tasks), d)  # a new task's (or the first) heads copy head 0
        return Denoiser(pipe.unet, pipe.image_encoder, tokens, objective, d, self.cfg.task_balance)

    def latent_scales(self, base: LDMSegPipeline | None) -> dict[str, float]:
        """s per task: --scale-factor (instances), the --init-from pipeline's where its AE is the one used,
        else 1 / std of the AE's latents on training targets (the paper's s, set from the data)."""
        scales = {}
        for task, ae in self.autoencoders.items():
            own = base.autoencoder(task) if base is not None else None
            if task == "instances" and self.cfg.scale_factor:
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
        if task == "depth":
            return torch.ones_like(batch["depth"], dtype=torch.bool)
        return batch[TRAINABLE[task].target] != 0

    def objective_labels(self, batch: dict[str, torch.Tensor]) -> dict:
        """What the objective reads beside the latents: the label map (direct) or the target maps (one-step)."""
        if self.cfg.objective == "direct":
            return {"labels": batch["semantic"]}
        if self.cfg.objective == "one-step":
            return {"labels": {k: v for k, v in batch.items() if k in ("ids", "semantic", "depth")}}
        return {}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        model_tasks = getattr(model, "module", model).task_embeddings.tasks
        task_ids = batch["task"]
        z0, valid = None, torch.ones(batch["image"].shape[:1] + batch["image"].shape[2:], dtype=torch.bool,
                                     device=task_ids.device)
        if self.cfg.objective == "one-step":  # no latent targets: the losses are taken on the decoded maps
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
                part = {key: v[sel] for key, v in batch.items() if key in ("ids", "semantic", "depth")}
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
                              make_sampler(cfg.sampler, cfg.prediction_type, cfg.timestep_spacing),
                              model.task_embeddings, semantic_autoencoder=aes.get("semantic"),
                              depth_autoencoder=aes.get("depth"), scale_factor=self.scales.get("instances", 1.0),
                              scale_factors=self.scales, categories=self.categories,
                              self_condition=model.objective.self_condition,
                              default_num_inference_steps=1 if cfg.objective != "diffusion" else cfg.inference_steps,
                              default_processing_resolution=cfg.size, final_x0=cfg.objective != "diffusion",
                              trained_on=self.trained_on, initial_noise=self.initial_noise,
                              **self.postprocess)

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


def sampled_pq(pipe: LDMSegPipeline, dataset, steps: int, batch_size: int = 8, seed: int = 0, step: int = 0,
               log_image: LogImage | None = None, min_area: int | None = None, ensemble_size: int = 1
               ) -> dict[str, float]:
    """Class-agnostic PQ of pipeline samples on a dataset of (image, ids) items (one sample per image
    unless `ensemble_size` says otherwise, whatever the pipeline's default)."""
    gen = torch.Generator().manual_seed(seed)

    def predict(items: list[dict]) -> list:
        out = pipe([it["image"] for it in items], num_inference_steps=steps, generator=gen, min_area=min_area,
                   ensemble_size=ensemble_size, task="instances")
        return list(zip(out.panoptic, out.segments_info, strict=True))

    return agnostic_pq(dataset, predict, batch_size, show_image=True, tag="val/samples", step=step,
                       log_image=log_image)


def sampled_metrics(pipe: LDMSegPipeline, dataset, task: str, steps: int, batch_size: int = 8, seed: int = 0,
                    step: int = 0, log_image: LogImage | None = None, ensemble_size: int = 1) -> dict[str, float]:
    """The task's metric of pipeline samples: PQ/SQ/RQ (instances), mIoU (semantic), RMSE/AbsRel/delta1 (depth)."""
    if task == "instances":
        return sampled_pq(pipe, dataset, steps, batch_size, seed, step, log_image, ensemble_size=ensemble_size)
    gen = torch.Generator().manual_seed(seed)

    def predict(items: list[dict]) -> list[np.ndarray]:
        out = pipe([it["image"] for it in items], num_inference_steps=steps, generator=gen, task=task,
                   ensemble_size=ensemble_size)
        return out.semantic if task == "semantic" else out.depth

    if task == "semantic":
        return semantic_scores(dataset, predict, pipe.semantic_autoencoder.num_ids, batch_size, show_image=True,
                               step=step, log_image=log_image)
    return depth_scores(dataset, predict, batch_size, show_image=True, step=step, log_image=log_image)


@torch.no_grad()
def sampled_pq_by_min_core(pipe: LDMSegPipeline, dataset, cores: dict, steps: int | None = None,
                           batch_size: int = 16, seed: int = 0) -> dict:
    """Sample each item once and score the same logits under each id-pruning size (name -> px at 512^2):
    compares post-processings without the sampling noise of separate runs (one sample per item: an ensemble's
    choice depends on the post-processing). Returns name -> PQ x100."""
    evaluators = {name: PanopticEvaluator([], class_agnostic=True) for name in cores}
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
        out = pipe([it["image"] for it in items], num_inference_steps=steps, generator=gen, output_logits=True,
                   ensemble_size=1, task="instances")
        for item, logits in zip(items, out.logits, strict=True):
            gt = item["ids"].numpy()
            area = scaled_area(pipe.config.min_area_at_512, *gt.shape)
            for name, core in cores.items():
                (pred, segs), = logits_to_panoptic(logits[None], pipe.config.confidence_threshold, area,
                                                   scaled_area(core, *gt.shape))
                evaluators[name].process(gt, segments_from_ids(gt), pred, segs)
    return {name: 100 * ev.evaluate()["All"]["pq"] for name, ev in evaluators.items()}


def served_pq_by_min_core(pipe: LDMSegPipeline, dataset, cores: dict, batch_size: int = 16, seed: int = 0) -> dict:
    """PQ x100 of the pipeline as served (its default sampler, steps and ensemble) under each id-pruning size
    (name -> px at 512^2): one full run per candidate from the same generator seed, because an ensemble's
    member choice depends on the post-processing. The pipeline's own size is restored afterwards."""
    own, scores = pipe.config.min_core_at_512, {}
    try:
        for name, core in cores.items():
            pipe.register_to_config(min_core_at_512=float(core))
            ev, gen = PanopticEvaluator([], class_agnostic=True), torch.Generator().manual_seed(seed)
            for start in range(0, len(dataset), batch_size):
                items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
                out = pipe([it["image"] for it in items], generator=gen, task="instances")
                for item, pred, segs in zip(items, out.panoptic, out.segments_info, strict=True):
                    gt = item["ids"].numpy()
                    ev.process(gt, segments_from_ids(gt), pred, segs)
            scores[name] = 100 * ev.evaluate()["All"]["pq"]
    finally:
        pipe.register_to_config(min_core_at_512=own)
    return scores


def train_diffusion(cfg: DiffusionConfig) -> Path:
    return train(cfg, DiffusionTask)
