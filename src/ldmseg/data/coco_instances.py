"""COCO *instance* annotations (polygons, RLE) as panoptic id maps: the format most segmentation data comes in.

Rules (those of COCO's own panoptic conversion): objects are painted largest first, so a smaller object lying on
a larger one stays visible; crowd regions lie under every object and are crowd segments (VOID in training, ignored
by PQ); pixels nothing covers are VOID. Segment ids are 1..K in painting order, with the annotation's category.
Masks are decoded by pycocotools, the ecosystem's own decoder. Malformed annotations are one-line errors naming
the annotation id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldmseg.data import formats, outputs
from ldmseg.errors import LDMSegError


@dataclass
class InstanceImage:
    id: int
    file_name: str
    height: int
    width: int
    annotations: list[dict]


@dataclass
class InstanceSet:
    images: list[InstanceImage]
    categories: dict[int, dict]
    path: Path


def load_instances(path: str | Path) -> InstanceSet:
    """Read and check a COCO instances JSON: images with size, annotations with a known image and category."""
    path = Path(path)
    data = formats.read_json(path)
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations",
                                                                                       "categories")):
        raise LDMSegError(f"{path}: not a COCO instances JSON (needs lists 'images', 'annotations', 'categories')")
    categories = {}
    for c in data["categories"]:
        if not isinstance(c, dict) or not _is_int(c.get("id")) or not isinstance(c.get("name"), str):
            raise LDMSegError(f"{path}: category {c!r}: needs an integer 'id' and a 'name'")
        categories[c["id"]] = {"id": c["id"], "name": c["name"], "isthing": 1,
                               "supercategory": c.get("supercategory", "")}
    images: dict[int, InstanceImage] = {}
    for im in data["images"]:
        if not isinstance(im, dict) or not _is_int(im.get("id")) or not isinstance(im.get("file_name"), str) or not (
                _is_int(im.get("height")) and _is_int(im.get("width")) and im["height"] > 0 and im["width"] > 0):
            raise LDMSegError(f"{path}: image {str(im)[:80]}: needs an integer 'id', 'file_name', 'height', 'width'")
        name = im["file_name"]
        if not outputs.is_plain_name(name):
            raise LDMSegError(f"{path}: image {im['id']}: file_name {name!r} leaves the image folder")
        images[im["id"]] = InstanceImage(im["id"], name, im["height"], im["width"], [])
    for ann in data["annotations"]:
        if not isinstance(ann, dict):
            raise LDMSegError(f"{path}: annotation {str(ann)[:60]}: not an object")
        aid = ann.get("id")
        if ann.get("image_id") not in images:
            raise LDMSegError(f"{path}: annotation {aid}: unknown image id {ann.get('image_id')!r}")
        if ann.get("category_id") not in categories:
            raise LDMSegError(f"{path}: annotation {aid}: unknown category id {ann.get('category_id')!r}")
        if ann.get("iscrowd", 0) not in (0, 1) or isinstance(ann.get("iscrowd"), bool):
            raise LDMSegError(f"{path}: annotation {aid}: iscrowd must be 0 or 1, got {ann.get('iscrowd')!r}")
        image = images[ann["image_id"]]
        check_segmentation(ann, image.height, image.width, path)
        image.annotations.append(ann)
    return InstanceSet(list(images.values()), categories, path)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_segmentation(ann: dict, height: int, width: int, source: Path) -> None:
    """An annotation's polygons (>= 3 points each) or RLE (of the image's size), checked before any decoding."""
    seg, aid = ann.get("segmentation"), ann.get("id")
    if isinstance(seg, list):
        if not seg or not all(isinstance(p, list) and all(isinstance(v, (int, float)) for v in p) for p in seg):
            raise LDMSegError(f"{source}: annotation {aid}: polygons must be lists of numbers")
        if any(len(p) < 6 or len(p) % 2 for p in seg):
            raise LDMSegError(f"{source}: annotation {aid}: a polygon with fewer than 3 points (or an odd count)")
    elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if list(seg["size"]) != [height, width]:
            raise LDMSegError(f"{source}: annotation {aid}: RLE of size {seg['size']}, the image is "
                              f"{[height, width]}")
        counts = seg["counts"]
        if isinstance(counts, list) and (any(not _is_int(c) or c < 0 for c in counts)
                                         or sum(counts) != height * width):
            raise LDMSegError(f"{source}: annotation {aid}: RLE counts do not cover the {height}x{width} image")
        if not isinstance(counts, (list, str)):
            raise LDMSegError(f"{source}: annotation {aid}: RLE counts must be a list or a string")
    else:
        raise LDMSegError(f"{source}: annotation {aid}: segmentation is neither polygons nor RLE")


def annotation_mask(ann: dict, height: int, width: int, source: Path) -> np.ndarray:
    """One (checked) annotation's pixels, bool HxW, from its polygons or RLE (compressed or not)."""
    from pycocotools import mask as mask_utils

    seg = ann["segmentation"]
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg["counts"], list):
        rle = mask_utils.frPyObjects(seg, height, width)
    else:
        rle = {"size": seg["size"], "counts": seg["counts"].encode()}
    try:
        return mask_utils.decode(rle).astype(bool)
    except Exception as e:  # noqa: BLE001 - pycocotools raises bare exceptions on corrupt RLE strings
        raise LDMSegError(f"{source}: annotation {ann.get('id')}: undecodable RLE ({e})") from None


def panoptic_from_instances(image: InstanceImage, source: Path) -> tuple[np.ndarray, list[dict]]:
    """The id map (0 = VOID) and segments_info of one image: crowd regions painted first (segments with
    iscrowd 1, which training turns to VOID and PQ ignores, as in COCO's panoptic files), then the objects largest
    first; an object wholly covered by smaller ones is dropped."""
    masks = [(annotation_mask(a, image.height, image.width, source), a) for a in image.annotations]
    crowds = [m for m in masks if m[1].get("iscrowd", 0)]
    objects = sorted((m for m in masks if not m[1].get("iscrowd", 0)), key=lambda m: -int(m[0].sum()))
    ids = np.zeros((image.height, image.width), np.int32)
    for k, (mask, _) in enumerate(crowds + objects, start=1):
        ids[mask] = k
    areas = np.bincount(ids.ravel(), minlength=len(masks) + 1)
    segments = []
    for k, (_, ann) in enumerate(crowds + objects, start=1):
        if not areas[k]:
            continue
        ys, xs = np.nonzero(ids == k)
        segments.append({"id": k, "category_id": ann["category_id"], "iscrowd": int(ann.get("iscrowd", 0)),
                         "area": int(areas[k]), "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                                                         int(ys.max() - ys.min() + 1)]})
    return ids, segments


def write_panoptic(instances: InstanceSet, out: str | Path, class_agnostic: bool = False,
                   progress: bool = True) -> int:
    """COCO-panoptic files (OUT/panoptic/<stem>.png, OUT/panoptic.json) of every image, for `evaluate` and
    panopticapi; class-agnostic: one category, 'object'. The JSON is written last, so a stopped run has no index."""
    from tqdm import tqdm

    out = Path(out)
    records = []
    for image in tqdm(instances.images, desc="converting", unit="image", disable=not progress):
        ids, segments = panoptic_from_instances(image, instances.path)
        if class_agnostic:
            segments = [{**s, "category_id": 1} for s in segments]
        png = Path(image.file_name).with_suffix(".png").name
        formats.write_panoptic_png(out / "panoptic" / png, ids)
        records.append({"image_id": image.id, "file_name": png, "segments_info": segments})
    categories = ([{"id": 1, "name": "object", "isthing": 1, "supercategory": "object"}] if class_agnostic
                  else list(instances.categories.values()))
    images = [{"id": im.id, "file_name": im.file_name, "height": im.height, "width": im.width}
              for im in instances.images]
    formats.write_json(out / "panoptic.json", {"images": images, "annotations": records, "categories": categories})
    return len(records)


def check_images(instances: InstanceSet, image_dir: str | Path) -> None:
    """Every image of the set is in `image_dir` at its annotated size (headers only)."""
    for image in instances.images:
        path = Path(image_dir) / image.file_name
        if not path.is_file():
            raise LDMSegError(f"{path}: image {image.id} of {instances.path} not found")
        width, height = formats.check_image(path)
        if (height, width) != (image.height, image.width):
            raise LDMSegError(f"{path}: {width}x{height}, but {instances.path} says {image.width}x{image.height}")


def write_split(instances_json: str | Path, image_dir: str | Path, out: str | Path, val: int, seed: int = 0
                ) -> tuple[int, int]:
    """OUT/train.json and OUT/val.json (`val` images drawn with `seed`) and OUT/images, a link to the image folder,
    so that `--data OUT/train.json --val-data OUT/val.json` find their images."""
    import json

    data = formats.read_json(instances_json)
    load_instances(instances_json)  # checked whole before anything is written
    ids = sorted(im["id"] for im in data["images"])
    if not 0 < val < len(ids):
        raise LDMSegError(f"--val {val}: the set has {len(ids)} images; hold out between 1 and {len(ids) - 1}")
    held = set(np.random.default_rng(seed).choice(ids, size=val, replace=False).tolist())
    out = Path(out)
    for name, keep in (("val", held), ("train", set(ids) - held)):
        part = {**data, "images": [im for im in data["images"] if im["id"] in keep],
                "annotations": [a for a in data["annotations"] if a["image_id"] in keep]}
        formats.write_json(out / f"{name}.json", json.loads(json.dumps(part)))
    link = out / "images"
    if not link.exists():
        link.symlink_to(Path(image_dir).resolve(), target_is_directory=True)
    return len(ids) - val, val
