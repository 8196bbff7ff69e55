"""Stage 2 as a task of the shared loop: the denoiser's loss (Algorithm 1), validation by
sampling (Algorithm 2), and export as an `LDMSegPipeline`."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ldmseg.data.datasets import PanopticDataset, SampleConfig, SyntheticDataset
from ldmseg.data.synthetic import SceneConfig
from ldmseg.diffusion.objective import DiffusionObjective, ObjectiveConfig
from ldmseg.diffusion.postprocess import logits_to_panoptic, scaled_area
from ldmseg.diffusion.schedule import make_sampler
from ldmseg.errors import LDMSegError
from ldmseg.metrics.panoptic import PanopticEvaluator, segments_from_ids
from ldmseg.models.denoiser import (
    TaskEmbeddings,
    build_unet,
    bypass_cross_attention,
    load_pretrained_unet,
    widen_conv_in,
)
from ldmseg.models.image_encoder import LearnedImageEncoder, SDVAEImageEncoder
from ldmseg.models.mask_autoencoder import load_mask_autoencoder
from ldmseg.pipeline import LDMSegPipeline
from ldmseg.training.autoencoder import VAL_SEED_OFFSET
from ldmseg.training.config import DiffusionConfig
from ldmseg.training.loop import train
from ldmseg.training.validation import LogImage, agnostic_pq
from ldmseg.weights import resolve_model_path, resolve_pipeline_path


def image_dataset(source: str, cfg: DiffusionConfig, num_ids: int, seed: int, train: bool,
                  length: int | None = None):
    sample = SampleConfig(size=cfg.size, num_ids=num_ids, hflip=train and cfg.hflip, crowd_to_void=True)
    if source == "synthetic":
        return SyntheticDataset(SceneConfig.presets(cfg.preset, cfg.size), sample, seed=seed, length=length)
    root = Path(source)
    if not (root / "panoptic.json").exists():
        raise LDMSegError(f"{root}: expected a COCO-panoptic folder with panoptic.json, images/, panoptic/")
    return PanopticDataset(root / "images", root / "panoptic.json", root / "panoptic", sample, seed=seed)


def build_image_encoder(cfg: DiffusionConfig, factor: int) -> nn.Module:
    if cfg.image_encoder == "sd-vae":
        if not cfg.pretrained_vae:
            raise LDMSegError("--image-encoder sd-vae needs --pretrained-vae DIR|HUB_ID")
        return SDVAEImageEncoder.from_sd_vae(cfg.pretrained_vae)
    if cfg.image_encoder != "learned":
        raise LDMSegError(f"unknown --image-encoder {cfg.image_encoder!r} (learned | sd-vae)")
    return LearnedImageEncoder(cfg.image_channels, factor, tuple(cfg.image_encoder_channels))


class Denoiser(nn.Module):
    """The trainable part of stage 2 (UNet, image encoder, task tokens); forward = the training loss,
    so that DDP sees one forward per step."""

    def __init__(self, unet: nn.Module, image_encoder: nn.Module, task_embeddings: TaskEmbeddings,
                 objective: DiffusionObjective):
        super().__init__()
        self.unet, self.image_encoder, self.task_embeddings = unet, image_encoder, task_embeddings
        self.objective = objective

    def forward(self, images: torch.Tensor, z0: torch.Tensor, valid: torch.Tensor, task: str = "panoptic"
                ) -> tuple[torch.Tensor, dict]:
        z_img = self.image_encoder.encode(images)
        hidden = self.task_embeddings(task, images.shape[0])
        return self.objective(lambda x, t: self.unet(x, t, encoder_hidden_states=hidden).sample, z0, z_img, valid)


POSTPROCESS_SETTINGS = ("confidence_threshold", "min_area_at_512", "min_core_at_512")


class DiffusionTask:
    def __init__(self, cfg: DiffusionConfig):
        self.cfg = cfg
        self.ae = load_mask_autoencoder(resolve_model_path(cfg.ae, "mask_autoencoder")).requires_grad_(False)
        num_ids, d = self.ae.num_ids, self.ae.config.get("latent_channels", 4)
        factor = self.ae.config.get("downsample_factor", 8)
        self.train_dataset = image_dataset(cfg.data, cfg, num_ids, cfg.seed, train=True)
        self.val_dataset = image_dataset(cfg.val_data or "synthetic", cfg, num_ids, cfg.seed + VAL_SEED_OFFSET,
                                         train=False, length=cfg.val_num)
        objective = DiffusionObjective(ObjectiveConfig(cfg.prediction_type, cfg.loss_weighting, cfg.snr_gamma,
                                                       cfg.self_condition_prob, cfg.mask_void, cfg.reduction))
        self.postprocess: dict = {}  # the pipeline defaults, unless a fine-tuned pipeline had its own
        if cfg.init_from:
            self.model, self.scale, self.postprocess = self.from_pipeline(cfg.init_from, objective)
            return
        self.scale = cfg.scale_factor or self.latent_scale()
        image_encoder = build_image_encoder(cfg, factor)
        in_channels = d + image_encoder.out_channels + (d if objective.self_condition else 0)
        if cfg.pretrained_unet:
            unet = load_pretrained_unet(cfg.pretrained_unet, in_channels)
        else:
            unet = build_unet(cfg.unet, in_channels, d, cfg.size // factor)
        if unet.config.out_channels != d:
            raise LDMSegError(f"the UNet predicts {unet.config.out_channels} channels, the mask AE has {d}")
        if cfg.conditioning == "none":
            bypass_cross_attention(unet)
        elif cfg.conditioning != "task-embedding":
            raise LDMSegError(f"unknown --conditioning {cfg.conditioning!r} (task-embedding | none)")
        if cfg.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        tasks = TaskEmbeddings(("panoptic",), cfg.task_tokens, unet.config.cross_attention_dim)
        self.model = Denoiser(unet, image_encoder, tasks, objective)

    @staticmethod
    def from_pipeline(path: str, objective: DiffusionObjective) -> tuple[Denoiser, float, dict]:
        """The trainable parts, scale factor and post-processing settings of a saved pipeline (fine-tuning);
        its AE must be --ae."""
        pipe = LDMSegPipeline.from_pretrained(resolve_pipeline_path(path))
        if pipe.config.self_condition and not objective.self_condition:
            raise LDMSegError(f"{path}: this model is self-conditioned; fine-tune it with --self-condition-prob > 0")
        if objective.self_condition and not pipe.config.self_condition:
            # the self-conditioning estimate is conv_in's last input: zero kernels leave the model unchanged at step 0
            widen_conv_in(pipe.unet, pipe.unet.config.in_channels + pipe.unet.config.out_channels)
        postprocess = {k: pipe.config[k] for k in POSTPROCESS_SETTINGS}
        return Denoiser(pipe.unet, pipe.image_encoder, pipe.task_embeddings, objective), pipe.config.scale_factor, \
            postprocess

    @torch.no_grad()
    def latent_scale(self, num: int = 64) -> float:
        """1 / std of the mask latents over `num` training masks (the paper's s, set from the data)."""
        ids = torch.stack([self.train_dataset[(i, i)]["ids"] for i in range(num)])
        return float(1.0 / self.ae.encode_ids(ids).std())

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        with torch.no_grad():
            z0 = self.ae.to(batch["ids"].device).encode_ids(batch["ids"]) * self.scale
        return model(batch["image"], z0, batch["ids"] != 0)

    def pipeline(self, model: Denoiser) -> LDMSegPipeline:
        cfg = self.cfg
        return LDMSegPipeline(model.unet, model.image_encoder, self.ae,
                              make_sampler(cfg.sampler, cfg.prediction_type, cfg.timestep_spacing),
                              model.task_embeddings, scale_factor=self.scale,
                              self_condition=model.objective.self_condition,
                              default_num_inference_steps=cfg.inference_steps, default_processing_resolution=cfg.size,
                              **self.postprocess)

    def validate(self, model: nn.Module, step: int, log_image: LogImage) -> dict[str, float]:
        pipe = self.pipeline(model)
        return sampled_pq(pipe, self.val_dataset, self.cfg.val_steps, step=step, log_image=log_image)

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
                   ensemble_size=ensemble_size)
        return list(zip(out.panoptic, out.segments_info, strict=True))

    return agnostic_pq(dataset, predict, batch_size, show_image=True, tag="val/samples", step=step,
                       log_image=log_image)


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
                   ensemble_size=1)
        for item, logits in zip(items, out.logits, strict=True):
            gt = item["ids"].numpy()
            area = scaled_area(pipe.config.min_area_at_512, *gt.shape)
            for name, core in cores.items():
                (pred, segs), = logits_to_panoptic(logits[None], pipe.config.confidence_threshold, area,
                                                   scaled_area(core, *gt.shape))
                evaluators[name].process(gt, segments_from_ids(gt), pred, segs)
    return {name: 100 * ev.evaluate()["All"]["pq"] for name, ev in evaluators.items()}


def train_diffusion(cfg: DiffusionConfig) -> Path:
    return train(cfg, DiffusionTask)
