"""Torch datasets over COCO-panoptic sets (ours included), ADE20K and on-the-fly synthetic scenes.

Every item is a dict of tensors: `image` [3, H, W] in [-1, 1], `ids` [H, W] int64 (randomly
reassigned into 1..N-1 when `reassign` is on, 0 = VOID), optional `semantic` / `depth`.
An item can be asked for as `ds[i]` (seeded by i) or `ds[(i, seed)]` so that a training run
draws the same random flips and ids whatever worker loads it — the basis of exact resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ldmseg.data import coco_panoptic, formats, transforms
from ldmseg.data.classes import ClassList, load_class_list
from ldmseg.data.synthetic import SceneConfig, generate_scene
from ldmseg.errors import LDMSegError


@dataclass(frozen=True)
class SampleConfig:
    """How a sample is prepared for a model."""

    size: int = 128
    resize_mode: str = "squash"  # 'squash' (paper) or 'pad' (keep aspect, pad bottom/right with VOID)
    num_ids: int = 128  # N: ids live in 1..N-1
    reassign: bool = True
    hflip: bool = False
    crop_scale: float = 1.0  # < 1: a random crop (sides this to 1 x the frame's) before resizing
    color_jitter: float = 0.0  # > 0: saturation, contrast, brightness scaled by U(1 - this, 1 + this)
    crowd_to_void: bool = True
    min_area: int = 0  # segments smaller than this (at the original size) become VOID


def _key(key: int | tuple[int, int]) -> tuple[int, int]:
    return key if isinstance(key, tuple) else (int(key), int(key))


def prepare_sample(image: np.ndarray, ids: np.ndarray, segments: list[dict], cfg: SampleConfig,
                   rng: np.random.Generator, semantic: np.ndarray | None = None,
                   depth: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """Apply the VOID rules, augment (crop, colours), resize, flip and reassign ids; convert to tensors."""
    ids = transforms.void_segments(ids.astype(np.int64), segments, cfg.min_area, cfg.crowd_to_void)
    if cfg.crop_scale < 1:
        window = transforms.random_crop_box(ids.shape, cfg.crop_scale, rng)
        image, ids = image[window], ids[window]
        semantic = None if semantic is None else semantic[window]
        depth = None if depth is None else depth[window]
    if cfg.color_jitter > 0:
        image = transforms.jitter_colors(image, cfg.color_jitter, rng)
    target = transforms.fit_size(ids.shape, cfg.size, cfg.resize_mode)
    image = transforms.resize_image(image, target)
    ids = transforms.resize_labels(ids, target)
    extras = {}
    if semantic is not None:
        extras["semantic"] = transforms.resize_labels(semantic, target).astype(np.int64)
    if depth is not None:
        extras["depth"] = transforms.resize_float(depth, target)
    if cfg.resize_mode == "pad":
        image = transforms.pad_to(image, cfg.size, 0)
        ids = transforms.pad_to(ids, cfg.size, formats.VOID)
        extras = {k: transforms.pad_to(v, cfg.size, 255 if k == "semantic" else 0) for k, v in extras.items()}
    if cfg.hflip and rng.random() < 0.5:
        image, ids, *rest = transforms.hflip(image, ids, *extras.values())
        extras = dict(zip(extras, rest, strict=True))
    ids = transforms.keep_largest(ids, cfg.num_ids - 1)
    if cfg.reassign:
        ids = transforms.reassign_ids(ids, cfg.num_ids, rng)
    out = {"image": torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1,
           "ids": torch.from_numpy(np.ascontiguousarray(ids)).long()}
    out.update({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in extras.items()})
    return out


class SyntheticDataset(Dataset):
    """Scenes generated on the fly: item i is scene seed (seed, i). `length=None` means unbounded.

    Several scene configs take turns (item i uses config i mod k): e.g. a mix of presets.
    """

    def __init__(self, scene: SceneConfig | Sequence[SceneConfig], sample: SampleConfig, seed: int = 0,
                 length: int | None = None, render: bool = True):
        self.scenes = [scene] if isinstance(scene, SceneConfig) else list(scene)
        self.sample, self.seed, self.length, self.render = sample, seed, length, render

    def __len__(self) -> int:
        return self.length if self.length is not None else 2**62

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, sample_seed = _key(key)
        s = generate_scene([self.seed, index], self.scenes[index % len(self.scenes)], render=self.render)
        rng = np.random.default_rng([self.seed, sample_seed, 1])
        return prepare_sample(s.image, s.ids, s.segments, self.sample, rng, s.semantic, s.depth)


class MaskCrops(Dataset):
    """`crops` square crops of `crop` px from each item's id map: the mask AE is local (receptive field
    ~100 px), so it learns from crops at the pixel scale it is used at, for a fraction of a whole mask's
    compute. Item i comes from source i mod k (e.g. the same scenes made at several sizes). With
    probability `focus` a crop is centred on a random pixel of a random segment, so small segments and
    their boundaries are seen as often as large ones; otherwise it is placed uniformly.
    Items are {"ids": [crops, crop, crop]}.
    """

    def __init__(self, sources: Sequence[Dataset], crop: int, crops: int, seed: int = 0, focus: float = 0.5):
        self.sources, self.crop, self.crops, self.seed, self.focus = list(sources), crop, crops, seed, focus

    def __len__(self) -> int:
        return min(len(s) for s in self.sources)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, sample_seed = _key(key)
        ids = self.sources[index % len(self.sources)][(index, sample_seed)]["ids"]
        h, w = ids.shape
        if min(h, w) < self.crop:
            raise LDMSegError(f"masks of {w}x{h} px are smaller than the crop of {self.crop} px")
        rng = np.random.default_rng([self.seed, sample_seed, 4])
        flat = ids.numpy().ravel()
        segments = np.unique(flat[flat != 0])
        crops = []
        for _ in range(self.crops):
            if len(segments) and rng.random() < self.focus:
                pixel = int(rng.choice(np.flatnonzero(flat == rng.choice(segments))))
                y0, x0 = (self._corner(c, n, rng) for c, n in zip(divmod(pixel, w), (h, w), strict=True))
            else:
                y0, x0 = int(rng.integers(0, h - self.crop + 1)), int(rng.integers(0, w - self.crop + 1))
            crops.append(ids[y0:y0 + self.crop, x0:x0 + self.crop])
        return {"ids": torch.stack(crops)}

    def _corner(self, centre: int, extent: int, rng: np.random.Generator) -> int:
        """Crop start that puts `centre` near the middle (jittered by a quarter crop), inside the map."""
        jitter = int(rng.integers(-(self.crop // 4), self.crop // 4 + 1))
        return int(np.clip(centre - self.crop // 2 + jitter, 0, extent - self.crop))


class TargetView(Dataset):
    """One target of another dataset's items, under the key a stage-1 AE trains on: `ids` for label maps
    (instance ids, or semantic class ids, which are never reassigned), `depth` for depth."""

    def __init__(self, source: Dataset, target: str):
        self.source, self.target = source, target
        self.key = "depth" if target == "depth" else "ids"

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        item = self.source[key]
        if self.target not in item:
            raise LDMSegError(f"this dataset has no {self.target!r} maps")
        return {self.key: item[self.target]}


class TaskSampled(Dataset):
    """Another dataset's items, each with the index of the task it trains (`task`, an int tensor), drawn with
    `weights` from a generator keyed like the item: a resumed run draws the same tasks (multi-task stage 2)."""

    def __init__(self, source: Dataset, task_indices: Sequence[int], weights: Sequence[float], seed: int = 0):
        total = float(sum(weights))
        if len(weights) != len(task_indices) or total <= 0 or min(weights) < 0:
            raise LDMSegError(f"task weights {list(weights)}: need one non-negative weight per task, not all zero")
        self.source, self.indices, self.seed = source, list(task_indices), seed
        self.p = [w / total for w in weights]

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        item = self.source[key]
        rng = np.random.default_rng([self.seed, _key(key)[1], 5])
        item["task"] = torch.tensor(self.indices[int(rng.choice(len(self.indices), p=self.p))])
        return item


class PanopticDataset(Dataset):
    """A COCO-panoptic set: image folder + panoptic JSON + PNG folder (COCO, or `ldmseg data synth`)."""

    def __init__(self, image_dir: str | Path, panoptic_json: str | Path, panoptic_dir: str | Path,
                 sample: SampleConfig, seed: int = 0):
        self.image_dir, self.panoptic_dir = Path(image_dir), Path(panoptic_dir)
        self.set = coco_panoptic.load_panoptic_json(panoptic_json)
        self.sample, self.seed = sample, seed
        if not self.set.records:
            raise LDMSegError(f"{panoptic_json}: no annotations")

    def __len__(self) -> int:
        return len(self.set.records)

    def image_path(self, index: int) -> Path:
        rec = self.set.records[index]
        name = rec.image_file or Path(rec.png_file).with_suffix(".jpg").name
        return self.image_dir / name

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """Image, id map and segments_info at the original size."""
        rec = self.set.records[index]
        image = formats.read_rgb(self.image_path(index))
        png = self.panoptic_dir / rec.png_file
        ids = coco_panoptic.read_panoptic_ids(self.panoptic_dir, rec)
        if ids.shape != image.shape[:2]:
            raise LDMSegError(f"{png}: size {ids.shape[::-1]} differs from its image {image.shape[1::-1]}")
        return image, ids, rec.segments

    def depth_path(self, index: int) -> Path:
        """Where a set's optional depth map lives: depth/<png stem>.png beside panoptic/ (ldmseg data synth)."""
        return self.panoptic_dir.parent / "depth" / Path(self.set.records[index].png_file).name

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """The sample, with `semantic` (category ids from segments_info, 0 = VOID) and, where the set has a
        depth/ folder, `depth`."""
        index, sample_seed = _key(key)
        index %= len(self)
        image, ids, segments = self.load_raw(index)
        semantic = transforms.semantic_from_panoptic(ids, segments)
        depth_file = self.depth_path(index)
        depth = formats.read_depth_png(depth_file) if depth_file.parent.is_dir() else None
        if depth is not None and depth.shape != ids.shape:
            raise LDMSegError(f"{depth_file}: size {depth.shape[::-1]} differs from its panoptic PNG")
        rng = np.random.default_rng([self.seed, sample_seed, 2])
        return prepare_sample(image, ids, segments, self.sample, rng, semantic, depth)


class CocoInstancesDataset(Dataset):
    """A COCO instances set (JSON of polygons / RLE + image folder), painted into panoptic id maps by
    `coco_instances.panoptic_from_instances` (crowd -> VOID in training, like COCO-panoptic crowd segments)."""

    def __init__(self, image_dir: str | Path, instances_json: str | Path, sample: SampleConfig, seed: int = 0):
        from ldmseg.data.coco_instances import load_instances

        self.image_dir, self.set = Path(image_dir), load_instances(instances_json)
        self.sample, self.seed = sample, seed
        if not self.set.images:
            raise LDMSegError(f"{instances_json}: no images")

    def __len__(self) -> int:
        return len(self.set.images)

    def categories(self) -> list[dict]:
        return list(self.set.categories.values())

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        from ldmseg.data.coco_instances import panoptic_from_instances

        index, sample_seed = _key(key)
        record = self.set.images[index % len(self)]
        image = formats.read_rgb(self.image_dir / record.file_name)
        if image.shape[:2] != (record.height, record.width):
            raise LDMSegError(f"{self.image_dir / record.file_name}: size {image.shape[1::-1]} differs from its "
                              f"annotation's {(record.width, record.height)}")
        ids, segments = panoptic_from_instances(record)
        semantic = transforms.semantic_from_panoptic(ids, segments)
        rng = np.random.default_rng([self.seed, sample_seed, 6])
        return prepare_sample(image, ids, segments, self.sample, rng, semantic)


class SemanticFolderDataset(Dataset):
    """A semantic label set: images and single-channel label PNGs matched by file stem, the labels mapped to
    ldmseg's convention (0 = ignore, classes 1..C) by a `ClassList` (CamVid, ADE20K, your own)."""

    IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

    def __init__(self, image_dir: str | Path, label_dir: str | Path, classes: ClassList,
                 sample: SampleConfig = SampleConfig(), seed: int = 0):
        self.image_dir, self.ann_dir = Path(image_dir), Path(label_dir)
        if not self.ann_dir.is_dir():
            raise LDMSegError(f"{self.ann_dir}: annotation folder not found")
        self.files = sorted(p.stem for p in self.ann_dir.glob("*.png"))
        if not self.files:
            raise LDMSegError(f"{self.ann_dir}: no PNG annotations")
        self.classes, self.sample, self.seed = classes, sample, seed

    def categories(self) -> list[dict]:
        return self.classes.categories()

    def __len__(self) -> int:
        return len(self.files)

    def image_file(self, name: str) -> Path:
        for suffix in self.IMAGE_SUFFIXES:
            path = self.image_dir / f"{name}{suffix}"
            if path.exists():
                return path
        raise LDMSegError(f"{self.ann_dir / name}.png: no image {name}.jpg/.png in {self.image_dir}")

    def semantic(self, name: str) -> np.ndarray:
        """The label PNG of `name` as class ids (0 = ignore)."""
        path = self.ann_dir / f"{name}.png"
        return self.classes.to_semantic(formats.read_label_png(path), path)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, sample_seed = _key(key)
        name = self.files[index % len(self)]
        image = formats.read_rgb(self.image_file(name))
        semantic = self.semantic(name)
        if semantic.shape != image.shape[:2]:
            raise LDMSegError(f"{self.ann_dir / name}.png: size {semantic.shape[::-1]} differs from its image "
                              f"{image.shape[1::-1]}")
        cfg = SampleConfig(**{**self.sample.__dict__, "reassign": False})
        rng = np.random.default_rng([self.seed, sample_seed, 3])
        out = prepare_sample(image, np.zeros(semantic.shape, np.int64), [], cfg, rng, semantic=semantic)
        return {"image": out["image"], "semantic": out["semantic"]}


ADE20K_CLASSES = 150


class ADE20KDataset(SemanticFolderDataset):
    """ADE20K semantic (ADEChallengeData2016 layout: images/<split>/*.jpg, annotations/<split>/*.png).

    The PNGs store 0 = ignore and classes 1..150. By default "reduce zero label" is applied here, once
    (classes 0..149, 255 = ignore, the benchmark convention); `reduce_zero_label=False` keeps the PNG values,
    which is ldmseg's semantic convention (0 = ignore) and what training uses.
    """

    def __init__(self, root: str | Path, split: str = "validation", sample: SampleConfig = SampleConfig(),
                 seed: int = 0, reduce_zero_label: bool = True):
        self.root = Path(root)
        names = self.class_names()
        super().__init__(self.root / "images" / split, self.root / "annotations" / split,
                         ClassList(names, first_value=1, ignore=0, title="ADE20K"), sample, seed)
        self.reduce_zero_label = reduce_zero_label

    @staticmethod
    def is_ade20k(root: str | Path) -> bool:
        root = Path(root)
        return (root / "annotations").is_dir() and (root / "images").is_dir() and not (root / "panoptic.json").exists()

    def class_names(self) -> tuple[str, ...]:
        """The names of the release's objectInfo150.txt where it is there ("class_k" if not); all stuff: ADE20K's
        semantic release has no thing / stuff split."""
        names = {}
        info = self.root / "objectInfo150.txt"
        if info.exists():
            for line in info.read_text(errors="replace").splitlines()[1:]:
                cols = line.split("\t")
                if len(cols) >= 5 and cols[0].strip().isdigit():
                    names[int(cols[0])] = cols[-1].split(";")[0].strip()
        return tuple(names.get(k, f"class_{k}") for k in range(1, ADE20K_CLASSES + 1))

    def semantic(self, name: str) -> np.ndarray:
        raw = formats.read_label_png(self.ann_dir / f"{name}.png")
        return reduce_zero_label(raw) if self.reduce_zero_label else raw.astype(np.int64)


def reduce_zero_label(labels: np.ndarray) -> np.ndarray:
    """ADE20K's label shift: 0 (ignore) -> 255, k -> k-1."""
    labels = labels.astype(np.int64)
    return np.where(labels == 0, 255, labels - 1)


SPLITS = {True: ("train", "training"), False: ("val", "validation")}


def semantic_folder(root: Path, classes: str, sample: SampleConfig, seed: int, train: bool) -> SemanticFolderDataset:
    """A semantic set with a class list (`classes`, else the folder's classes.json) in SegNet's layout
    (<split>/ images beside <split>annot/ labels, as CamVid) or in images/<split> + annotations/<split>."""
    spec = classes or root / "classes.json"
    class_list = load_class_list(spec)
    for split in SPLITS[train]:
        for images, labels in ((root / split, root / f"{split}annot"),
                               (root / "images" / split, root / "annotations" / split)):
            if images.is_dir() and labels.is_dir():
                return SemanticFolderDataset(images, labels, class_list, sample, seed)
    names = " or ".join(SPLITS[train])
    raise LDMSegError(f"{root}: no {names} split (expected <split>/ + <split>annot/, or images/<split>/ + "
                      "annotations/<split>/)")


class ImageFolderDataset(Dataset):
    """Unlabelled images (a folder of image files): what one-step distillation from a teacher reads (its targets
    are the teacher's predictions, ldmseg.training.teacher). Items have the image only, resized and flipped as
    every other set's."""

    def __init__(self, root: str | Path, sample: SampleConfig, seed: int = 0):
        self.root, self.sample, self.seed = Path(root), sample, seed
        self.files = sorted(p for p in self.root.iterdir() if p.suffix.lower() in formats.IMAGE_SUFFIXES
                            and p.is_file())
        if not self.files:
            raise LDMSegError(f"{root}: no images ({', '.join(formats.IMAGE_SUFFIXES)})")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, sample_seed = _key(key)
        image = formats.read_rgb(self.files[index % len(self)])
        rng = np.random.default_rng([self.seed, sample_seed, 4])
        out = prepare_sample(image, np.zeros(image.shape[:2], np.int64), [], self.sample, rng)
        return {"image": out["image"]}


def labelled_folder(root: str | Path, sample: SampleConfig, seed: int, train: bool,
                    length: int | None = None, classes: str = "", unlabelled: bool = False) -> Dataset:
    """A real training / validation set by its layout: a COCO instances JSON (images/ beside it) or a folder with
    instances.json and images/, a semantic folder with a class list (`classes`, a JSON
    file or 'camvid', or the folder's classes.json), a COCO-panoptic folder (panoptic.json, images/, panoptic/)
    or ADE20K's ADEChallengeData2016 (its training / validation split, labels kept as 1..150 with 0 = ignore);
    with `length`, only its first `length` items (validation). `unlabelled`: a folder of images (or one with
    images/) without labels is accepted too (distillation from a teacher's predictions)."""
    root = Path(root)
    if root.suffix == ".json" and root.is_file():
        data: Dataset = CocoInstancesDataset(root.parent / "images", root, sample, seed=seed)
    elif not root.is_dir():
        raise LDMSegError(f"{root}: data folder not found")
    elif (root / "instances.json").exists() and not (root / "panoptic.json").exists():
        data = CocoInstancesDataset(root / "images", root / "instances.json", sample, seed=seed)
    elif classes or (root / "classes.json").exists():
        data = semantic_folder(root, classes, sample, seed, train)
    elif ADE20KDataset.is_ade20k(root):
        data = ADE20KDataset(root, "training" if train else "validation", sample, seed, reduce_zero_label=False)
    elif (root / "panoptic.json").exists():
        data = PanopticDataset(root / "images", root / "panoptic.json", root / "panoptic", sample, seed=seed)
    elif unlabelled:
        data = ImageFolderDataset(root / "images" if (root / "images").is_dir() else root, sample, seed)
    else:
        raise LDMSegError(f"{root}: expected a COCO-panoptic folder (panoptic.json, images/, panoptic/), COCO "
                          "instances (a JSON with images/ beside it), ADE20K's ADEChallengeData2016 (images/, "
                          "annotations/) or a label folder with a class list (--classes FILE|camvid, or classes.json)")
    if length is not None and length < len(data):
        data = Subset(data, range(length))
    return data
