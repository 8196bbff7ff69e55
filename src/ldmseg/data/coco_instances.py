"""COCO *instance* annotations (polygons, RLE) as panoptic id maps: the format most segmentation data comes in.

Rules (those of COCO's own panoptic conversion): objects are painted largest first, so a smaller object lying on
a larger one stays visible; crowd regions lie under every object and are crowd segments (VOID in training, ignored
by PQ); pixels nothing covers are VOID. Segment ids are 1..K in painting order, with the annotation's category.
Masks are decoded by pycocotools, the ecosystem's own decoder, which trusts its input (a huge coordinate costs
gigabytes, short RLE runs leave memory uninitialised): every record is checked here first, and a malformed one is
a one-line error naming the file, the record (image / annotation / category id), the field and what was expected.
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


MARGIN = 1.0  # polygon points may lie up to this many image sizes outside the image (crops of larger scenes)
OUTLINE_LIMIT = 256  # an annotation's polygons may run at most this many times (height + width) px: pycocotools
#                      spends ~45 bytes per px of outline, so this bounds its memory (~80 MB at 4000x3000)
RLE_DIGITS = "".join(chr(c) for c in range(48, 112))  # the characters of COCO's compressed RLE strings


def load_instances(path: str | Path) -> InstanceSet:
    """Read and check a COCO instances JSON, every record before any is used: unique image, annotation and
    category ids; images with a size within the pixel limit and a plain, unique file name; annotations with a
    known image and category and a segmentation that pycocotools can decode exactly (`check_segmentation`)."""
    path = Path(path)
    data = formats.read_json(path)
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations",
                                                                                       "categories")):
        raise LDMSegError(f"{path}: not a COCO instances JSON (needs lists 'images', 'annotations', 'categories')")
    categories = _categories(data["categories"], path)
    images = _images(data["images"], path)
    seen: set[int] = set()
    for i, ann in enumerate(data["annotations"]):
        record = f"annotation {ann['id']}" if isinstance(ann, dict) and _is_int(ann.get("id")) else \
            f"annotations[{i}]"
        if not isinstance(ann, dict):
            raise _bad(path, record, "", "an object", ann)
        if not _is_int(ann.get("id")):
            raise _bad(path, record, "id", "an integer", ann.get("id"))
        if ann["id"] in seen:
            raise _bad(path, record, "id", "a unique id; another annotation has it too", ann["id"])
        seen.add(ann["id"])
        if not _is_int(ann.get("image_id")) or ann["image_id"] not in images:
            raise _bad(path, record, "image_id", "the id of an image in the file", ann.get("image_id"))
        if not _is_int(ann.get("category_id")) or ann["category_id"] not in categories:
            raise _bad(path, record, "category_id", "the id of a category in the file", ann.get("category_id"))
        if not _is_int(ann.get("iscrowd", 0)) or ann.get("iscrowd", 0) not in (0, 1):
            raise _bad(path, record, "iscrowd", "0 or 1", ann.get("iscrowd"))
        image = images[ann["image_id"]]
        check_segmentation(ann, image, path, record)
        image.annotations.append(ann)
    return InstanceSet(list(images.values()), categories, path)


def _bad(source: Path, record: str, field: str, expected: str, got: object = None, found: str | None = None
         ) -> LDMSegError:
    """The one-line error of a bad record: file, record, field, what was expected and what was found (`found`, or
    `got` shortened)."""
    shown = found if found is not None else repr(got)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    where = f"{record}: {field}" if field else record
    return LDMSegError(f"{source}: {where}: expected {expected}, got {shown}")


def _categories(records: list, path: Path) -> dict[int, dict]:
    """Categories by id: integer ids, each once, and names."""
    categories: dict[int, dict] = {}
    for i, c in enumerate(records):
        record = f"category {c['id']}" if isinstance(c, dict) and _is_int(c.get("id")) else f"categories[{i}]"
        if not isinstance(c, dict) or not _is_int(c.get("id")):
            raise _bad(path, record, "id", "an integer", c.get("id") if isinstance(c, dict) else c)
        if c["id"] in categories:
            raise _bad(path, record, "id", "a unique id; another category has it too", c["id"])
        if not isinstance(c.get("name"), str):
            raise _bad(path, record, "name", "a string", c.get("name"))
        categories[c["id"]] = {"id": c["id"], "name": c["name"], "isthing": 1,
                               "supercategory": c.get("supercategory", "")}
    return categories


def _images(records: list, path: Path) -> dict[int, InstanceImage]:
    """Images by id: integer ids, each once; a size within the pixel limit; a plain file name no other image has."""
    images: dict[int, InstanceImage] = {}
    names: dict[str, int] = {}
    limit = formats.max_pixels()
    for i, im in enumerate(records):
        record = f"image {im['id']}" if isinstance(im, dict) and _is_int(im.get("id")) else f"images[{i}]"
        if not isinstance(im, dict) or not _is_int(im.get("id")):
            raise _bad(path, record, "id", "an integer", im.get("id") if isinstance(im, dict) else im)
        if im["id"] in images:
            raise _bad(path, record, "id", "a unique id; another image has it too", im["id"])
        for key in ("height", "width"):
            if not _is_int(im.get(key)) or im[key] <= 0:
                raise _bad(path, record, key, "a positive integer", im.get(key))
        if im["height"] * im["width"] > limit:
            raise _bad(path, record, "height x width", f"at most {limit / 1e6:.0f} MP (LDMSEG_MAX_PIXELS)",
                       found=f"{im['width']}x{im['height']}")
        name = im.get("file_name")
        if not outputs.is_plain_name(name) or not Path(name).name:
            raise _bad(path, record, "file_name", "a file name inside the image folder", name)
        if name in names:
            raise _bad(path, record, "file_name", f"a name no other image has (image {names[name]} has it)", name)
        names[name] = im["id"]
        images[im["id"]] = InstanceImage(im["id"], name, im["height"], im["width"], [])
    return images


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_segmentation(ann: dict, image: InstanceImage, source: Path, record: str) -> None:
    """An annotation's polygons or RLE, checked before any decoding so that pycocotools only ever sees what it
    decodes exactly: polygons of >= 3 finite points within MARGIN of the image and of bounded outline; RLE of the
    image's size whose runs (listed, or compressed in a string) cover exactly its height x width pixels (fewer
    would leave memory uninitialised)."""
    seg = ann.get("segmentation")
    if isinstance(seg, list) and seg:
        _check_polygons(seg, image, source, record)
    elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
        size, counts = seg["size"], seg["counts"]
        if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)) or \
                size != [image.height, image.width]:
            raise _bad(source, record, "segmentation.size", f"[{image.height}, {image.width}], the size of "
                       f"image {image.id}", size)
        if isinstance(counts, str):
            counts = rle_string_counts(counts, source, record)
        elif not isinstance(counts, list) or any(not _is_int(c) or c < 0 for c in counts):
            raise _bad(source, record, "segmentation.counts", "a list of run lengths (integers >= 0) or a "
                       "compressed RLE string", counts)
        if sum(counts) != image.height * image.width:
            raise _bad(source, record, "segmentation.counts", f"runs covering the {image.height}x{image.width} "
                       f"image ({image.height * image.width} px)", found=f"{sum(counts)} px")
    else:
        raise _bad(source, record, "segmentation", "a non-empty list of polygons or an RLE {'size', 'counts'}",
                   seg)


def _check_polygons(polygons: list, image: InstanceImage, source: Path, record: str) -> None:
    """Every polygon a flat list of >= 3 (x, y) pairs of finite numbers within MARGIN image sizes of the image;
    their outlines together at most OUTLINE_LIMIT x (height + width) px long."""
    length = 0.0
    for i, poly in enumerate(polygons):
        field = f"segmentation[{i}]"
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
            raise _bad(source, record, field, "a polygon: a list of at least 3 x, y pairs", poly)
        for j, value in enumerate(poly):
            axis, side = ("x", image.width) if j % 2 == 0 else ("y", image.height)
            low, high = -MARGIN * side, (1 + MARGIN) * side
            if type(value) not in (int, float) or not low <= value <= high:
                raise _bad(source, record, f"{field}[{j}]", f"a finite {axis} coordinate in {low:g}..{high:g} (the "
                           f"image's {side} px, with a margin)", value)
        xy = np.asarray(poly, np.float64).reshape(-1, 2)
        length += float(np.abs(xy - np.roll(xy, 1, axis=0)).max(axis=1).sum())
    limit = OUTLINE_LIMIT * (image.height + image.width)
    if length > limit:
        raise _bad(source, record, "segmentation", f"polygons at most {limit} px long ({OUTLINE_LIMIT} x the "
                   f"image's height + width)", found=f"{length:.0f} px")


def rle_string_counts(text: str, source: Path, record: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' rleFrString: 5 bits a character from '0',
    0x20 = more characters follow, 0x10 in the last = negative; runs after the second are deltas to the run two
    before), refusing what that decoder would misread: foreign characters, a cut-off number, negative runs."""
    field = "segmentation.counts"
    if any(ch not in RLE_DIGITS for ch in text):
        raise _bad(source, record, field, "a compressed RLE string (characters '0'..'o')", text)
    counts: list[int] = []
    p = 0
    while p < len(text):
        value, shift, more = 0, 0, True
        while more:
            if p == len(text) or shift > 30:
                raise _bad(source, record, field, "a compressed RLE string of whole run lengths", text)
            c = ord(text[p]) - 48
            value |= (c & 0x1F) << shift
            more, p, shift = bool(c & 0x20), p + 1, shift + 5
            if not more and c & 0x10:
                value -= 1 << shift
        if len(counts) > 2:
            value += counts[-2]
        if value < 0:
            raise _bad(source, record, field, f"run lengths >= 0 (run {len(counts)} is {value})", text)
        counts.append(value)
    return counts


def annotation_rle(ann: dict, height: int, width: int) -> dict:
    """One checked annotation as a compressed RLE (small: its runs, not its pixels)."""
    from pycocotools import mask as mask_utils

    seg = ann["segmentation"]
    if isinstance(seg, list):
        return mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    if isinstance(seg["counts"], list):
        return mask_utils.frPyObjects(seg, height, width)
    return {"size": [height, width], "counts": seg["counts"].encode()}


def panoptic_from_instances(image: InstanceImage) -> tuple[np.ndarray, list[dict]]:
    """The id map (0 = VOID) and segments_info of one image: crowd regions painted first (segments with
    iscrowd 1, which training turns to VOID and PQ ignores, as in COCO's panoptic files), then the objects largest
    first; an object wholly covered by smaller ones is dropped. Areas come from the runs, and masks are decoded one
    at a time: memory is the id map and one mask, however many annotations the image has."""
    from pycocotools import mask as mask_utils
    from scipy import ndimage

    rles = [annotation_rle(a, image.height, image.width) for a in image.annotations]
    sizes = [int(mask_utils.area(rle)) for rle in rles]  # one at a time: pycocotools counts a list in uint8
    crowds = [i for i, a in enumerate(image.annotations) if a.get("iscrowd", 0)]
    objects = sorted((i for i, a in enumerate(image.annotations) if not a.get("iscrowd", 0)),
                     key=lambda i: -sizes[i])
    order = crowds + objects
    ids = np.zeros((image.height, image.width), np.int32)
    for k, i in enumerate(order, start=1):
        ids[mask_utils.decode(rles[i]).view(bool)] = k
    areas = np.bincount(ids.ravel(), minlength=len(order) + 1)
    boxes = ndimage.find_objects(ids, max_label=len(order))
    segments = []
    for k, i in enumerate(order, start=1):
        if not areas[k]:
            continue
        ys, xs = boxes[k - 1]
        ann = image.annotations[i]
        segments.append({"id": k, "category_id": ann["category_id"], "iscrowd": int(ann.get("iscrowd", 0)),
                         "area": int(areas[k]), "bbox": [xs.start, ys.start, xs.stop - xs.start,
                                                         ys.stop - ys.start]})
    return ids, segments


def output_names(instances: InstanceSet) -> list[str]:
    """Each image's panoptic PNG name (its file name's stem + .png, without folders), checked to be unique before
    anything is written: `a.png` and `a.jpg`, or `a/x.png` and `b/x.png`, would otherwise share one map."""
    names: dict[str, InstanceImage] = {}
    for image in instances.images:
        png = Path(image.file_name).with_suffix(".png").name
        if png in names:
            raise _bad(instances.path, f"image {image.id}", "file_name", f"a name whose output {png} no other "
                       f"image shares (image {names[png].id}, {names[png].file_name!r}, has it)", image.file_name)
        names[png] = image
    return list(names)


def write_panoptic(instances: InstanceSet, out: str | Path, class_agnostic: bool = False,
                   progress: bool = True) -> int:
    """COCO-panoptic files (OUT/panoptic/<stem>.png, OUT/panoptic.json) of every image, for `evaluate` and
    panopticapi; class-agnostic: one category, 'object'. Every record is checked (load_instances, output_names)
    before the first file is written, and the JSON is written last, so a stopped run has no index."""
    from tqdm import tqdm

    out = Path(out)
    names = output_names(instances)
    records = []
    for image, png in tqdm(zip(instances.images, names, strict=True), total=len(names), desc="converting",
                           unit="image", disable=not progress):
        ids, segments = panoptic_from_instances(image)
        if class_agnostic:
            segments = [{**s, "category_id": 1} for s in segments]
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
        if not path.exists():
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
