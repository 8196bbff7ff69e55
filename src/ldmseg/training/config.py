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

from ldmseg import checks


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


SCENE_PRESETS = ("default", "easy", "dense", "coco")


def preset_spec(text: str) -> str:
    """'default' or a '+'-mix of scene presets ('default+dense')."""
    bad = [name for name in str(text).split("+") if name.strip() not in SCENE_PRESETS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown scene preset {bad[0]!r}; choose from {', '.join(SCENE_PRESETS)}"
                                         " (or a '+' mix)")
    return str(text)


def crop_size(text: str) -> int:
    value = checks.non_negative(text)
    if value % 8:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or a multiple of 8, got {value}")
    return value


def trainable_task(text: str) -> str:
    from ldmseg.tasks import DERIVED, TRAINABLE

    if text not in TRAINABLE:
        hint = " (it is instances + semantic merged: train those two)" if text in DERIVED else ""
        raise argparse.ArgumentTypeError(f"{text!r} is not a trainable task{hint}; choose from {', '.join(TRAINABLE)}")
    return text


# Every field's range or choices, by name: the parser checks flags with them, check_config_values config files.
FIELD_CHECKS: dict[str, checks.Check] = {
    **dict.fromkeys(("max_steps", "batch_size", "checkpoint_every", "checkpoints_total_limit",
                     "log_every", "crops_per_mask", "latent_channels", "downsample_factor",
                     "encoder_channels", "decoder_channels", "points_at_512", "image_channels",
                     "image_encoder_channels", "task_tokens", "slots"),
                    checks.positive),
    **dict.fromkeys(("val_steps", "inference_steps"), checks.sampling_steps),
    "seed": checks.seed, "threads": checks.threads, "num_workers": checks.workers,
    "grad_accum": checks.grad_accum, "val_num": checks.val_num,
    **dict.fromkeys(("warmup_steps", "val_every", "decoder_blocks",
                     "head_hidden"), checks.non_negative),
    **dict.fromkeys(("weight_decay", "grad_clip", "time_limit_minutes", "kl_weight", "latent_noise", "ce_weight",
                     "latent_anchor", "bce_weight", "dice_weight", "gradient_weight", "scale_factor", "task_weights"),
                    checks.non_negative_float),
    **dict.fromkeys(("size", "val_size", "scene_sizes"), checks.multiple_of(8)),
    **dict.fromkeys(("crop_focus", "importance_ratio", "self_condition_prob"), checks.probability),
    "task_balance": checks.between(0.0, 1.0, open_high=True),
    "crop_scale": checks.between(0.1, 1.0), "color_jitter": checks.between(0.0, 1.0, open_high=True),
    "lr": checks.positive_float, "snr_gamma": checks.positive_float, "oversample": checks.at_least(1.0, float),
    "ema_decay": checks.between(0.0, 1.0, open_high=True), "num_bits": checks.between(1, 24, int),
    "crop": crop_size, "preset": preset_spec, "tasks": trainable_task,
}
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "lr_schedule": ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"),
    "mixed_precision": ("no", "fp16", "bf16"), "target": ("instances", "semantic", "depth"),
    "autoencoder": ("shallow", "sd-vae"), "input_stem": ("conv", "unshuffle"), "head": ("pixel", "slots"),
    "image_encoder": ("learned", "sd-vae", "vit"), "unet": ("tiny", "base", "small", "sd15"),
    "conditioning": ("task-embedding", "task-embedding+time", "none"),
    "prediction_type": ("epsilon", "v_prediction", "sample"), "objective": ("diffusion", "direct", "one-step"),
    "targets": ("labels", "teacher"), "instance_ids": ("matched", "canonical"),
    "loss_weighting": ("paper", "min-snr", "none"), "reduction": ("sum", "mean"),
    "sampler": ("ddim", "dpm++", "unipc", "euler", "ddpm"), "timestep_spacing": ("trailing", "leading", "linspace"),
}


def field_check(name: str, kind: type) -> checks.Check:
    """The check of one field's (element) values: its range, its choices, or its plain type."""
    if name in FIELD_CHECKS:
        return FIELD_CHECKS[name]
    if kind is bool:
        return checks.strict_bool
    if name in FIELD_CHOICES:
        choices = FIELD_CHOICES[name]

        def choice(text: str) -> str:
            if text not in choices:
                raise argparse.ArgumentTypeError(f"invalid choice {text!r} (choose from {', '.join(choices)})")
            return text
        choice.__name__ = "choice"
        return choice
    return kind if kind in (int, float, str) else str


# --help shows the flags in these groups, in this order; a field not named here is a model flag.
HELP_GROUPS: dict[str, tuple[str, ...]] = {
    "data": ("data", "val_data", "classes", "preset", "size", "scene_sizes", "crop", "crops_per_mask", "crop_focus",
             "hflip", "crop_scale", "color_jitter", "target", "tasks", "task_weights", "num_bits"),
    "model": (),
    "optimisation": ("max_steps", "batch_size", "lr", "weight_decay", "warmup_steps", "lr_schedule", "grad_clip",
                     "grad_accum", "mixed_precision", "ema_decay", "objective", "prediction_type", "loss_weighting",
                     "snr_gamma", "self_condition_prob", "mask_void", "reduction", "kl_weight", "latent_noise",
                     "ce_weight", "bce_weight", "dice_weight", "gradient_weight", "points_at_512", "oversample",
                     "importance_ratio", "latent_anchor", "freeze_encoder", "task_balance", "gradient_checkpointing"),
    "checkpoints and runs": ("out", "resume", "checkpoint_every", "checkpoints_total_limit", "time_limit_minutes",
                             "seed", "init_from"),
    "validation and logging": ("val_every", "val_num", "val_size", "val_steps", "log_every", "sampler",
                               "timestep_spacing", "inference_steps"),
    "machine": ("threads", "num_workers", "channels_last"),
}


def help_group(name: str) -> str:
    return next((group for group, names in HELP_GROUPS.items() if name in names), "model")


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One --flag per dataclass field (underscores -> dashes), range-checked (FIELD_CHECKS / FIELD_CHOICES), with
    the field's comment as help and its default, in the help groups of HELP_GROUPS; tuples take several values
    ('a b' or 'a,b')."""
    hints = typing.get_type_hints(cls)
    helps = field_comments(cls)
    groups = {name: parser.add_argument_group(name) for name in HELP_GROUPS}
    for f in dataclasses.fields(cls):
        group = groups[help_group(f.name)]
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        text = f"{helps.get(f.name, '')} (default: {shown!s})".strip().replace("%", "%%")
        element = typing.get_args(kind)[0] if typing.get_origin(kind) is tuple else kind
        check = field_check(f.name, element)
        metavar = "BOOL" if kind is bool else ("{" + ",".join(FIELD_CHOICES[f.name]) + "}"
                                                if f.name in FIELD_CHOICES else None)
        if typing.get_origin(kind) is tuple:
            group.add_argument(flag, type=_comma_list(check), nargs="+", default=default, metavar="V", help=text)
        else:
            group.add_argument(flag, type=check, default=default, metavar=metavar, help=text)


def field_comments(cls: type) -> dict[str, str]:
    """Each field's trailing `# comment` in this module's source: the flags' help texts live beside the fields."""
    import inspect

    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        for line in inspect.getsource(klass).splitlines():
            name, sep, rest = line.strip().partition(":")
            if sep and "#" in rest and name.isidentifier():
                found[name] = rest.split("#", 1)[1].strip()
    return found


def check_config_values(cls: type, data: dict, source: str) -> dict:
    """A config file's fields, checked key by key: an unknown key or a bad value is one line naming the file and
    the key. Returns the values as the parser would have them."""
    from ldmseg.errors import LDMSegError

    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in data.items():
        if key not in hints:
            raise LDMSegError(f"{source}: unknown key {key!r} (not a field of {cls.__name__})")
        kind = hints[key]
        is_tuple = typing.get_origin(kind) is tuple
        element = typing.get_args(kind)[0] if is_tuple else kind
        values = value if is_tuple and isinstance(value, list) else [value]
        if is_tuple != isinstance(value, list) and not (is_tuple and isinstance(value, (str, int, float))):
            raise LDMSegError(f"{source}: key {key!r}: expected {'a list' if is_tuple else 'one value'}, got {value!r}")
        check = field_check(key, element)
        parsed = []
        for v in values:
            if element is str and not isinstance(v, str) or element in (int, float) and isinstance(v, (bool, str)):
                raise LDMSegError(f"{source}: key {key!r}: expected {element.__name__}, got {v!r}")
            try:
                parsed.append(check(v if element is not str else str(v)))
            except argparse.ArgumentTypeError as e:
                raise LDMSegError(f"{source}: key {key!r}: {e}") from None
        out[key] = parsed if is_tuple else parsed[0]
    return out


def _comma_list(kind: type):
    """A tuple flag's word: 'a,b' or 'a' -> [kind(a), kind(b)] (flags take `--tasks a,b` or `--tasks a b`)."""
    def parse(word: str) -> list:
        return [kind(part) for part in word.split(",") if part.strip()]
    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def _flat_tuple(value):
    """Parsed tuple flags arrive as lists of lists (words of comma lists), config files as plain lists."""
    if not isinstance(value, list):
        return value
    return tuple(x for part in value for x in (part if isinstance(part, list) else [part]))


def dataclass_from_args(cls: type, args: argparse.Namespace):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    return cls(**{k: _flat_tuple(v) for k, v in values.items()})


def dumps(cfg) -> str:
    return json.dumps(dataclasses.asdict(cfg), indent=2)


@dataclass
class AutoencoderConfig(LoopConfig):
    """Stage 1 (docs/design.md, "Stage 1"). Defaults: the shipped demo AE recipe on synthetic scenes."""

    out: str = "runs/mask-ae"
    target: str = "instances"  # what the AE encodes: instances (panoptic ids) | semantic (class ids) | depth
    # a labelled folder is COCO-panoptic, a COCO instances JSON, ADE20K or a label folder; silhouettes paste the
    # instances' object outlines over synthetic masks; a '+' mix takes turns between its sources
    data: str = "synthetic"  # 'synthetic', a labelled folder, 'silhouettes:INSTANCES.json' or a mix ('a+b', --crop)
    val_data: str = ""  # '' = held-out synthetic scenes
    classes: str = ""  # semantic label folders (CamVid, your own): a classes JSON or 'camvid' (else its classes.json)
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
    latent_anchor: float = 0.0  # > 0, with --init-from: the encoder trains, its latents pulled towards the initial
    # encoder's by this weight x (MSE / their variance), so stage-2 models trained on the old latents stay usable
    pretrained_vae: str = ""  # for 'sd-vae': a diffusers AutoencoderKL directory or hub id
    latent_channels: int = 4
    downsample_factor: int = 8
    encoder_channels: tuple[int, ...] = (32, 64, 128, 256)
    decoder_channels: int = 256
    decoder_blocks: int = 1
    input_stem: str = "conv"  # 'conv' (paper: 3x3 conv at full resolution) or 'unshuffle' (2x2 fold, none)
    decoder_refine: bool = False  # a residual 3x3 conv (zero-initialised) after each upsampling of the decoder
    head_hidden: int = 0  # > 0: a two-layer per-pixel head of this width instead of the linear 1x1 conv
    head: str = "pixel"  # 'pixel' (paper: N logits per pixel) or 'slots' (per cell K id distributions, per pixel
    # a mixture of its 3x3 cells' slots; with --init-from, it replaces the head of an AE without it)
    slots: int = 2  # with --head slots: id distributions per latent cell
    gaussian: bool = False
    kl_weight: float = 0.0
    latent_noise: float = 0.25  # train the decoder on latents + U(0, this) x std noise (robustness)
    points_at_512: int = 112 * 112
    oversample: float = 3.0
    importance_ratio: float = 0.75
    ce_weight: float = 1.0
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    gradient_weight: float = 1.0  # depth: weight of the L1 on depth gradients beside the L1 on depth
    hflip: bool = True


@dataclass
class DiffusionConfig(LoopConfig):
    """Stage 2 (docs/design.md, "Stage 2"). Loop defaults: the paper's optimiser; model defaults: a small CPU
    model."""

    out: str = "runs/ldmseg"
    weight_decay: float = 0.1
    tasks: tuple[str, ...] = ("instances",)  # trained tasks (ldmseg.tasks): instances, semantic, depth
    task_weights: tuple[float, ...] = ()  # how often each of --tasks is drawn per example ('' = equally)
    ae: str = "demo"  # instances mask AE: a save_pretrained directory, 'demo' or 'demo-v2'
    semantic_ae: str = ""  # semantic AE (task semantic): a directory; '' = the --init-from pipeline's
    depth_ae: str = ""  # depth AE (task depth): a directory; '' = the --init-from pipeline's
    data: str = "synthetic"  # 'synthetic' or a COCO-panoptic folder (images/, panoptic/, panoptic.json)
    val_data: str = ""  # '' = held-out synthetic scenes
    classes: str = ""  # semantic label folders (CamVid, your own): a classes JSON or 'camvid' (else its classes.json)
    preset: str = "default"
    size: int = 128
    val_num: int = 16
    val_steps: int = 10
    image_encoder: str = "learned"  # 'learned' (trained jointly), 'sd-vae' (frozen SD VAE encoder) or 'vit'
    pretrained_vae: str = ""  # for 'sd-vae': an AutoencoderKL directory or hub id
    pretrained_vit: str = ""  # for 'vit' (paper Table 2): a transformers ViT directory or hub id, fine-tuned
    image_channels: int = 64  # learned / ViT encoder output channels
    image_encoder_channels: tuple[int, ...] = (32, 64, 128)
    unet: str = "tiny"  # preset: tiny | base | small | sd15
    init_from: str = ""  # an LDMSegPipeline directory (or 'demo') to fine-tune: its UNet, image encoder, tokens, s
    pretrained_unet: str = ""  # an SD directory / hub id (its 'unet' subfolder) to start from
    # 'task-embedding' (cross-attention tokens), 'task-embedding+time' (also a vector per task added to the timestep
    # embedding) or 'none' (bypassed)
    conditioning: str = "task-embedding"
    task_heads: bool = False  # one output conv per task (the tasks' latents come from different AEs)
    task_balance: float = 0.0  # > 0: each task's loss divided by its running mean (an EMA of this momentum, e.g.
    # 0.99), so that every task trains at one loss scale; the tasks' shares of examples stay --task-weights
    task_tokens: int = 1
    objective: str = "diffusion"  # 'diffusion' (the paper), 'direct': the discriminative baseline (semantic only;
    # the same networks predict the labels' latents in one step, cross-entropy through the frozen AE decoder), or
    # 'one-step': fine-tune an --init-from model to one deterministic call per task (diffusion.one_step)
    instance_ids: str = "matched"  # one-step instances: 'matched' (Hungarian, permutation-invariant) or
    # 'canonical' (segments numbered in raster order: the alternative it was measured against)
    targets: str = "labels"  # one-step: 'labels' (the data's own) or 'teacher' (the --init-from model's served
    # predictions: --data may then be unlabelled images)
    prediction_type: str = "epsilon"  # epsilon (paper) | v_prediction | sample
    loss_weighting: str = "paper"  # paper | min-snr | none
    snr_gamma: float = 2.0
    self_condition_prob: float = 0.5
    mask_void: bool = True
    reduction: str = "sum"
    scale_factor: float = 0.0  # 0 = 1 / std of the AE's latents on training masks
    gradient_checkpointing: bool = False
    hflip: bool = True
    crop_scale: float = 1.0  # < 1: train on random crops, sides U(this, 1) x the image's (scale augmentation)
    color_jitter: float = 0.0  # > 0: random saturation, contrast, brightness factors in 1 +- this
    sampler: str = "ddim"
    timestep_spacing: str = "trailing"
    inference_steps: int = 50


RESUME_MAY_CHANGE = ("out", "max_steps", "resume", "time_limit_minutes", "threads", "num_workers", "log_every",
                     "val_every", "checkpoint_every", "checkpoints_total_limit")


def explicit_fields(argv: list[str], cls: type) -> set[str]:
    """The config fields a command line sets explicitly (`--batch-size 4`, `--batch-size=4`)."""
    names = {f.name for f in dataclasses.fields(cls)}
    given = {a[2:].split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--")}
    return given & names


def resumed_config(cfg: LoopConfig, explicit: set[str]) -> LoopConfig:
    """With --resume and a saved run: the run's own config.json, where only RESUME_MAY_CHANGE fields may be set
    again; another flag given with a value that differs from the run's is refused (one line). The run is where it
    is now (`out` follows a moved or copied run directory). A run directory with training state but no config, or
    with the other stage's config, is refused: never silent defaults."""
    from ldmseg.data.formats import read_json
    from ldmseg.errors import LDMSegError

    root = Path(cfg.out)
    path = root / "config.json"
    if not cfg.resume:
        return cfg
    if not path.exists():
        if (root / "checkpoints").is_dir() and any((root / "checkpoints").iterdir()):
            raise LDMSegError(f"{root}: has checkpoints but no config.json; it cannot be resumed (start a new --out)")
        return cfg
    data = read_json(path)
    names = {f.name for f in dataclasses.fields(type(cfg))}
    if not isinstance(data, dict) or not data:
        raise LDMSegError(f"{path}: not a run configuration")
    foreign = sorted(set(data) - names)
    if foreign:
        other = "ldmseg train-ae (stage 1)" if "target" in data else "ldmseg train (stage 2)"
        raise LDMSegError(f"{root}: a run of the other stage (its config has {foreign[0]!r}); resume it with {other}")
    saved = type(cfg).load(path)
    for name in sorted(explicit - set(RESUME_MAY_CHANGE)):
        if getattr(cfg, name) != getattr(saved, name):
            allowed = ", ".join("--" + n.replace("_", "-") for n in RESUME_MAY_CHANGE)
            raise LDMSegError(f"--{name.replace('_', '-')} {getattr(cfg, name)} differs from this run's "
                              f"{getattr(saved, name)} ({path}); on resume only {allowed} may change")
    changes = {n: getattr(cfg, n) for n in explicit & set(RESUME_MAY_CHANGE)}
    return dataclasses.replace(saved, **{**changes, "resume": cfg.resume, "out": cfg.out})
