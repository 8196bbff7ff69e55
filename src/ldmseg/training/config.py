"""Training configs: plain dataclasses with paper defaults, saved beside every run and
overridable from the command line. No torch import here (the CLI builds parsers from these).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass
from pathlib import Path


@dataclass
class LoopConfig:
    """What the shared training loop needs; each stage's config extends it."""

    out: str = "runs/run"
    max_steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.05
    warmup_steps: int = 200
    lr_schedule: str = "cosine"  # any diffusers.optimization scheduler name
    grad_clip: float = 3.0
    grad_accum: int = 1
    mixed_precision: str = "no"  # no | fp16 | bf16
    ema_decay: float = 0.0  # 0 disables the EMA copy
    checkpoint_every: int = 500
    checkpoints_total_limit: int = 3
    log_every: int = 20
    val_every: int = 500
    resume: str = ""  # '' | 'latest' | path to a checkpoint directory
    seed: int = 0
    num_workers: int = 0
    threads: int = 0  # torch CPU threads (0 = torch's default)
    channels_last: bool = False  # NHWC weights and activations (faster convs under bf16 on CPUs with AMX)
    time_limit_minutes: float = 0.0  # stop early (checkpoint + export) after this wall time; 0 = no limit

    def save(self, path: str | Path) -> None:
        from ldmseg.data.formats import write_json

        write_json(path, dataclasses.asdict(self))

    @classmethod
    def load(cls, path: str | Path) -> LoopConfig:
        from ldmseg.data.formats import read_json

        data = read_json(path)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One --flag per dataclass field (underscores -> dashes); tuples take several values."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if kind is bool:
            parser.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=default,
                                metavar="BOOL")
        elif typing.get_origin(kind) is tuple:
            parser.add_argument(flag, type=typing.get_args(kind)[0], nargs="+", default=default)
        else:
            parser.add_argument(flag, type=kind if kind in (int, float, str) else str, default=default)


def dataclass_from_args(cls: type, args: argparse.Namespace):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def dumps(cfg) -> str:
    return json.dumps(dataclasses.asdict(cfg), indent=2)


@dataclass
class AutoencoderConfig(LoopConfig):
    """Stage 1 (REFERENCE §2). Defaults: the shipped demo AE recipe on synthetic scenes."""

    out: str = "runs/mask-ae"
    data: str = "synthetic"  # 'synthetic' or a COCO-panoptic folder (images/, panoptic/, panoptic.json)
    val_data: str = ""  # '' = held-out synthetic scenes
    preset: str = "dense"  # synthetic scene preset(s) for training; "default+dense" mixes them
    size: int = 128
    scene_sizes: tuple[int, ...] = ()  # synthetic: make scenes at these sizes in turn (default: --size)
    crop: int = 0  # train on crops of this many px of each mask (0 = whole masks)
    crops_per_mask: int = 4  # with --crop: crops taken from each mask (a batch holds batch_size x this crops)
    crop_focus: float = 0.5  # with --crop: share of crops centred on a random segment (small ones seen as often)
    val_num: int = 48
    val_size: int = 128
    num_bits: int = 7  # N = 128 ids
    autoencoder: str = "shallow"  # 'shallow' (§3.1) or 'sd-vae' (Table 1 †: SD's VAE fine-tuned)
    init_from: str = ""  # a mask AE directory, 'demo' or 'demo-v2': fine-tune it (its architecture; the flags
    # below ignored, except --decoder-refine, which adds the refinement convs to an AE without them)
    freeze_encoder: bool = False  # train the decoder only: latents, and stage-2 models trained on them, stay valid
    pretrained_vae: str = ""  # for 'sd-vae': a diffusers AutoencoderKL directory or hub id
    latent_channels: int = 4
    downsample_factor: int = 8
    encoder_channels: tuple[int, ...] = (32, 64, 128, 256)
    decoder_channels: int = 256
    decoder_blocks: int = 1
    input_stem: str = "conv"  # 'conv' (paper: 3x3 conv at full resolution) or 'unshuffle' (2x2 fold, none)
    decoder_refine: bool = False  # a residual 3x3 conv (zero-initialised) after each upsampling of the decoder
    head_hidden: int = 0  # > 0: a two-layer per-pixel head of this width instead of the linear 1x1 conv
    gaussian: bool = False
    kl_weight: float = 0.0
    latent_noise: float = 0.25  # train the decoder on latents + U(0, this) x std noise (robustness)
    points_at_512: int = 112 * 112
    oversample: float = 3.0
    importance_ratio: float = 0.75
    ce_weight: float = 1.0
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    hflip: bool = True


@dataclass
class DiffusionConfig(LoopConfig):
    """Stage 2 (REFERENCE §3). Loop defaults are the paper's optimiser; model defaults a small CPU model."""

    out: str = "runs/ldmseg"
    weight_decay: float = 0.1
    ae: str = "demo"  # mask AE: a save_pretrained directory or 'demo'
    data: str = "synthetic"  # 'synthetic' or a COCO-panoptic folder (images/, panoptic/, panoptic.json)
    val_data: str = ""  # '' = held-out synthetic scenes
    preset: str = "default"
    size: int = 128
    val_num: int = 16
    val_steps: int = 10
    image_encoder: str = "learned"  # 'learned' (trained jointly) or 'sd-vae' (frozen SD VAE encoder)
    pretrained_vae: str = ""  # for 'sd-vae': an AutoencoderKL directory or hub id
    image_channels: int = 64  # learned encoder output channels
    image_encoder_channels: tuple[int, ...] = (32, 64, 128)
    unet: str = "tiny"  # preset: tiny | base | small | sd15
    init_from: str = ""  # an LDMSegPipeline directory (or 'demo') to fine-tune: its UNet, image encoder, tokens, s
    pretrained_unet: str = ""  # an SD directory / hub id (its 'unet' subfolder) to start from
    conditioning: str = "task-embedding"  # 'task-embedding' (cross-attention tokens) or 'none' (bypassed)
    task_tokens: int = 1
    prediction_type: str = "epsilon"  # epsilon (paper) | v_prediction | sample
    loss_weighting: str = "paper"  # paper | min-snr | none
    snr_gamma: float = 2.0
    self_condition_prob: float = 0.5
    mask_void: bool = True
    reduction: str = "sum"
    scale_factor: float = 0.0  # 0 = 1 / std of the AE's latents on training masks
    gradient_checkpointing: bool = False
    hflip: bool = True
    sampler: str = "ddim"
    timestep_spacing: str = "trailing"
    inference_steps: int = 50
