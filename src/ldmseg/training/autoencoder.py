"""Stage 1 as a task of the shared loop: the mask AE's loss, validation and export."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ldmseg.data import silhouettes
from ldmseg.data.bits import ids_to_bits
from ldmseg.data.datasets import (
    MaskCrops,
    SampleConfig,
    SemanticFolderDataset,
    SyntheticDataset,
    TargetView,
    labelled_folder,
)
from ldmseg.data.synthetic import SceneConfig
from ldmseg.data.transforms import resize_labels
from ldmseg.diffusion.postprocess import logits_to_panoptic, semantic_from_logits
from ldmseg.errors import LDMSegError
from ldmseg.models.depth_autoencoder import DepthAutoencoder, depth_autoencoder_loss, depth_planes
from ldmseg.models.loading import load_autoencoder
from ldmseg.models.mask_autoencoder import MaskAutoencoder, add_latent_noise, kl_divergence
from ldmseg.models.mask_losses import mask_autoencoder_loss, scaled_num_points
from ldmseg.models.vae_mask_autoencoder import VAEMaskAutoencoder
from ldmseg.tasks import TRAINABLE
from ldmseg.training.config import AutoencoderConfig
from ldmseg.training.loop import train
from ldmseg.training.validation import LogImage, agnostic_pq, depth_scores, semantic_scores
from ldmseg.weights import resolve_model_path

VAL_SEED_OFFSET = 1_000_003  # held-out synthetic scenes never overlap the training stream


def mask_dataset(source: str, size: int, num_ids: int, seed: int, preset: str, train: bool,
                 length: int | None = None, target: str = "instances", classes: str = "") -> Dataset:
    """What a stage-1 AE of `target` learns from: synthetic scenes (on the fly, masks only) or a COCO-panoptic
    folder, as items {"ids": label map} (instances; semantic: class ids, 0 = VOID) or {"depth": map}.
    Crowd stays a segment."""
    if target not in TRAINABLE:
        raise LDMSegError(f"unknown --target {target!r}; choose from {', '.join(TRAINABLE)}")
    instances = target == "instances"  # other targets leave the instance ids alone (no pruning, no reassignment)
    sample = SampleConfig(size=size, num_ids=num_ids if instances else 2**24, reassign=instances, hflip=train,
                          crowd_to_void=False)
    if source.startswith(silhouettes.PREFIX):
        if not instances:
            raise LDMSegError(f"--data {source}: silhouettes are for --target instances")
        bank = silhouettes.cached_bank(source[len(silhouettes.PREFIX):])
        return silhouettes.SilhouetteScenes(bank, SceneConfig.presets(preset, size), num_ids, seed, length=length)
    if source == "synthetic":
        items: Dataset = SyntheticDataset(SceneConfig.presets(preset, size), sample, seed=seed, length=length,
                                          render=False)
    else:
        items = labelled_folder(source, sample, seed, train, length, classes)
        if isinstance(getattr(items, "dataset", items), SemanticFolderDataset) and target != "semantic":
            raise LDMSegError(f"{source}: a semantic label set (no instances); train it with --target semantic")
    return items if instances else TargetView(items, TRAINABLE[target].target)


def training_masks(cfg: AutoencoderConfig, num_ids: int) -> Dataset:
    """The training stream: whole maps at --size, or --crop crops of label maps made at each of --scene-sizes, from
    each source of --data ('synthetic+split/train.json' takes turns between synthetic scenes and real masks)."""
    sizes = cfg.scene_sizes or (cfg.size,)
    sources = [mask_dataset(source, size, num_ids, cfg.seed, cfg.preset, train=True, target=cfg.target,
                            classes=cfg.classes)
               for source in cfg.data.split("+") for size in sizes]
    if not cfg.crop:
        if len(sources) > 1:
            raise LDMSegError("--scene-sizes and a '+' mix of --data need --crop (a batch holds masks of one size)")
        return sources[0]
    if cfg.target == "depth":
        raise LDMSegError("--crop is for label maps (instances, semantic); train the depth AE on whole maps")
    return MaskCrops(sources, cfg.crop, cfg.crops_per_mask, seed=cfg.seed, focus=cfg.crop_focus)


def build_autoencoder(cfg: AutoencoderConfig) -> torch.nn.Module:
    """A new mask AE from the flags, or (--init-from) a saved one to fine-tune; --freeze-encoder fixes f_t."""
    model = _new_or_saved_autoencoder(cfg)
    if cfg.freeze_encoder:
        model.encoder_module().requires_grad_(False)
    return model


def _new_or_saved_autoencoder(cfg: AutoencoderConfig) -> torch.nn.Module:
    kind = TRAINABLE[cfg.target].kind if cfg.target in TRAINABLE else "ids"
    if cfg.init_from:
        model = load_autoencoder(resolve_model_path(cfg.init_from, "mask_autoencoder"), kind).train()
        if kind == "ids" and model.config.num_bits != cfg.num_bits:
            raise LDMSegError(f"{cfg.init_from}: its mask AE has {model.config.num_bits} bits; pass "
                              f"--num-bits {model.config.num_bits}")
        if isinstance(model, MaskAutoencoder):
            changes = {}
            if cfg.decoder_refine and not model.config.decoder_refine:
                changes["decoder_refine"] = True
            if cfg.head == "slots" and model.config.head != "slots":
                changes.update(head="slots", slots=cfg.slots)
            return rebuilt(model, **changes) if changes else model
        return model
    if kind == "depth":
        return DepthAutoencoder(latent_channels=cfg.latent_channels, downsample_factor=cfg.downsample_factor,
                                encoder_channels=tuple(cfg.encoder_channels), decoder_channels=cfg.decoder_channels,
                                decoder_blocks=cfg.decoder_blocks, input_stem=cfg.input_stem)
    if cfg.autoencoder == "sd-vae":
        if not cfg.pretrained_vae:
            raise LDMSegError("--autoencoder sd-vae needs --pretrained-vae DIR|HUB_ID")
        return VAEMaskAutoencoder.from_sd_vae(cfg.pretrained_vae, cfg.num_bits)
    if cfg.autoencoder != "shallow":
        raise LDMSegError(f"unknown --autoencoder {cfg.autoencoder!r} (shallow | sd-vae)")
    return MaskAutoencoder(num_bits=cfg.num_bits, latent_channels=cfg.latent_channels,
                           downsample_factor=cfg.downsample_factor, encoder_channels=tuple(cfg.encoder_channels),
                           decoder_channels=cfg.decoder_channels, decoder_blocks=cfg.decoder_blocks,
                           gaussian=cfg.gaussian, input_stem=cfg.input_stem, decoder_refine=cfg.decoder_refine,
                           head_hidden=cfg.head_hidden, head=cfg.head, slots=cfg.slots)


def rebuilt(ae: MaskAutoencoder, **changes) -> MaskAutoencoder:
    """A trained AE in a changed architecture, every weight whose shape still fits kept: `decoder_refine`
    adds zero-initialised refinement convs (it decodes exactly as before at step 0); `head="slots"` replaces
    the per-pixel N-way head by the slot head (new: the slot head and the pixel head's last conv; the
    encoder, and so the latent space, unchanged)."""
    new = MaskAutoencoder(**{**ae.config, **changes})
    target = new.state_dict()
    kept = {k: v for k, v in ae.state_dict().items() if k in target and target[k].shape == v.shape}
    missing = new.load_state_dict(kept, strict=False).missing_keys
    head = f"decoder.{len(new.decoder) - 1}."  # the pixel head: its outputs change with the slot head
    assert all(k.startswith(("refine.", "slot_head.", head)) for k in missing), missing
    return new.train()


class AutoencoderTask:
    """Everything stage 1 adds to the shared loop, for a label-map AE (instances, semantic) or the depth AE."""

    def __init__(self, cfg: AutoencoderConfig):
        self.cfg = cfg
        self.model = build_autoencoder(cfg)
        self.anchor = self.anchor_model()
        num_ids = 2**cfg.num_bits
        self.train_dataset = training_masks(cfg, num_ids)
        source = cfg.val_data or "synthetic"
        self.val_dataset = mask_dataset(source, cfg.val_size, num_ids, cfg.seed + VAL_SEED_OFFSET, cfg.preset,
                                        train=False, length=cfg.val_num, target=cfg.target,
                                        classes=cfg.classes)

    def anchor_model(self) -> MaskAutoencoder | None:
        """A frozen copy of the --init-from AE whose latents --latent-anchor pulls the training encoder towards."""
        if self.cfg.latent_anchor <= 0:
            return None
        if not self.cfg.init_from or self.cfg.freeze_encoder or not isinstance(self.model, MaskAutoencoder):
            raise LDMSegError("--latent-anchor keeps a fine-tuned mask AE encoder near its start: it needs "
                              "--init-from, a trainable encoder (no --freeze-encoder) and a label-map AE")
        return copy.deepcopy(self.model).requires_grad_(False).eval()

    def latent_drift(self, bits: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """How far the latents moved from the anchor's: MSE relative to the anchor latents' variance."""
        with torch.no_grad():
            ref = self.anchor.to(bits.device).encode_distribution(bits)[0].float()
        return (mean.float() - ref).pow(2).mean() / ref.var().clamp_min(1e-8)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        if self.cfg.target == "depth":
            planes = depth_planes(batch["depth"])
            if self.cfg.channels_last:
                planes = planes.contiguous(memory_format=torch.channels_last)
            return depth_autoencoder_loss(model(planes, latent_noise=self.cfg.latent_noise), batch["depth"],
                                          self.cfg.gradient_weight)
        ids = batch["ids"].flatten(0, -3)  # crops: [B, K, c, c] -> [B K, c, c]
        if self.cfg.target == "semantic" and int(ids.max()) >= 2**self.cfg.num_bits:
            raise LDMSegError(f"class id {int(ids.max())} does not fit {self.cfg.num_bits} bits; raise --num-bits")
        bits = ids_to_bits(ids, self.cfg.num_bits)
        if self.cfg.channels_last:
            bits = bits.contiguous(memory_format=torch.channels_last)
        decoded, mean, logvar = model(bits, latent_noise=self.cfg.latent_noise)
        ae = getattr(model, "module", model)  # DDP-wrapped: the head is the inner model's
        n_points = scaled_num_points(self.cfg.points_at_512, *ids.shape[-2:])
        loss, logs = mask_autoencoder_loss(lambda coords: ae.point_logits(decoded, coords), ids, n_points,
                                           self.cfg.oversample, self.cfg.importance_ratio, self.cfg.ce_weight,
                                           self.cfg.bce_weight, self.cfg.dice_weight,
                                           log_probs=getattr(ae, "outputs_log_probs", False))
        if self.cfg.kl_weight > 0:
            kl = kl_divergence(mean, logvar)
            loss = loss + self.cfg.kl_weight * kl
            logs["kl"] = kl.item()
        if self.anchor is not None:
            drift = self.latent_drift(bits, mean)
            loss = loss + self.cfg.latent_anchor * drift
            logs["latent_drift"] = drift.item()
        return loss, logs

    def validate(self, model: torch.nn.Module, step: int, log_image: LogImage) -> dict[str, float]:
        if self.cfg.target == "depth":
            return reconstruction_depth(model, self.val_dataset, step=step, log_image=log_image)
        if self.cfg.target == "semantic":
            return reconstruction_miou(model, self.val_dataset, step=step, log_image=log_image)
        return reconstruction_pq(model, self.val_dataset, step=step, log_image=log_image)

    def save_model(self, model: torch.nn.Module, directory: Path) -> None:
        model.save_pretrained(directory)


def reconstruction_pq(ae: MaskAutoencoder, dataset: Dataset, batch_size: int = 16, min_area: int = 0,
                      latent_noise: float = 0.0, step: int = 0, log_image: LogImage | None = None,
                      generator: torch.Generator | None = None, threshold: float = 0.0, min_core: int = 0,
                      process_size: int | None = None) -> dict[str, float]:
    """Class-agnostic PQ of encode -> (noise) -> decode -> post-process on a mask dataset.

    threshold 0 = plain argmax (reconstruction); 0.5 = the prediction rule of the research code.
    min_core > 0 prunes ids owning fewer confident pixels (diffusion.postprocess.prune_ids).
    process_size: masks are resized (nearest) to this square size before encoding, as `ldmseg reconstruct
    --size` does, and decoded straight back to their own size; None encodes them as they are.
    """
    def predict(items: list[dict]) -> list:
        ids = torch.stack([it["ids"] for it in items])
        size = tuple(ids.shape[-2:])
        if process_size is not None:
            ids = torch.from_numpy(resize_labels(ids.numpy(), (process_size, process_size)))
        latents = add_latent_noise(ae.encode_ids(ids.to(ae.device)), latent_noise, generator, per_sample_random=False)
        return logits_to_panoptic(ae.decode(latents, size=size), threshold, min_area, min_core)

    return agnostic_pq(dataset, predict, batch_size, tag="val/reconstruction", step=step, log_image=log_image)


def reconstruction_miou(ae: MaskAutoencoder, dataset: Dataset, batch_size: int = 16, latent_noise: float = 0.0,
                        step: int = 0, log_image: LogImage | None = None) -> dict[str, float]:
    """mIoU x100 (and pixel accuracy) of a semantic AE's argmax reconstruction: classes 1..N-1, 0 ignored."""
    def predict(items: list[dict]) -> list[np.ndarray]:
        labels = torch.stack([it["ids"] for it in items])
        latents = add_latent_noise(ae.encode_ids(labels.to(ae.device)), latent_noise, per_sample_random=False)
        return list(semantic_from_logits(ae.decode(latents, size=tuple(labels.shape[-2:]))).cpu().numpy())

    return semantic_scores(dataset, predict, ae.num_ids, batch_size, key="ids", step=step, log_image=log_image)


def reconstruction_depth(ae: DepthAutoencoder, dataset: Dataset, batch_size: int = 16, latent_noise: float = 0.0,
                         step: int = 0, log_image: LogImage | None = None) -> dict[str, float]:
    """RMSE / AbsRel / delta<1.25 of the depth AE's reconstruction."""
    def predict(items: list[dict]) -> list[np.ndarray]:
        depth = torch.stack([it["depth"] for it in items]).to(ae.device)
        latents = add_latent_noise(ae.encode_depth(depth), latent_noise, per_sample_random=False)
        return list(ae.decode_depth(latents, size=tuple(depth.shape[-2:])).cpu().numpy())

    return depth_scores(dataset, predict, batch_size, step=step, log_image=log_image)


def train_autoencoder(cfg: AutoencoderConfig) -> Path:
    return train(cfg, AutoencoderTask)
