"""`ldmseg visualize`: image / ground truth / prediction grids: COCO-panoptic sets, semantic class maps (with a legend
of the classes) and depth maps (with a colour bar); GT, predictions or both."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from ldmseg.data import coco_panoptic, formats, outputs
from ldmseg.errors import LDMSegError
from ldmseg.tasks import task_spec
from ldmseg.viz import (
    blend,
    class_colours,
    colorize,
    colorize_depth,
    colorize_semantic,
    grid,
    match_ids,
    overlay,
    with_depth_bar,
    with_legend,
)

Item = TypeVar("Item")


def find_image(image_dir: Path, record: coco_panoptic.PanopticRecord) -> Path:
    """The image of a record: its `images[].file_name`, else the PNG's stem with a common suffix."""
    return _in_folder(image_dir, record.image_file, record.png_file)


def _in_folder(image_dir: Path, file_name: str | None, png: str) -> Path:
    if file_name:
        return image_dir / file_name
    stem = Path(png).stem
    for name in [stem + s for s in formats.IMAGE_SUFFIXES] + [stem + s.upper() for s in formats.IMAGE_SUFFIXES]:
        if (image_dir / name).exists():
            return image_dir / name
    raise LDMSegError(f"{image_dir}: no image for {png}")


class ImageSource:
    """The images `--images` names, as predict reads it: a folder (every image of the set, found by its
    `file_name` or its PNG's stem), or one file, a quoted glob or '-' (predict's image_files): then only the
    set's images among those are used."""

    def __init__(self, spec: str):
        self.spec = spec
        self.folder = Path(spec) if Path(spec).is_dir() else None
        self.by_name: dict[str, Path] = {}
        self.by_stem: dict[str, Path] = {}
        if self.folder is None:
            from ldmseg.commands.predict import image_files  # loads torch: only for a file, a glob or stdin

            for path in image_files(spec):
                self.by_name.setdefault(path.name, path)
                self.by_stem.setdefault(path.stem, path)

    def find(self, file_name: str | None, png: str) -> Path | None:
        """The image of a picture (its images[].file_name, else its PNG's stem); None where a selection of files
        lacks it (a folder's missing image is an error naming it)."""
        if self.folder is not None:
            return _in_folder(self.folder, file_name, png)
        if file_name:
            return self.by_name.get(Path(file_name).name)
        return self.by_stem.get(Path(png).stem)

    def select(self, items: Sequence[Item], names: Callable[[Item], tuple[str | None, str]]) -> list[Item]:
        """`items` whose image this source names (a folder: all of them); `names(item)` = (file_name, png)."""
        if self.folder is not None:
            return list(items)
        kept = [item for item in items if self.find(*names(item)) is not None]
        if not kept:
            raise LDMSegError(f"--images {self.spec}: none of these images belongs to the set ({len(items)} "
                              "pictures, matched by file name or PNG stem)")
        return kept

    def image(self, file_name: str | None, png: str) -> np.ndarray:
        return formats.read_rgb(self.find(file_name, png))


def visualize_sets(images: str, gt_json: str | None, gt_dir: str | None, out: str, pred_json: str | None = None,
                   pred_dir: str | None = None, limit: int | None = None) -> int:
    """Write one grid PNG per image: the image, then overlay and colours of the GT and/or the prediction. Side by
    side, a predicted segment that matches a GT segment (IoU > 0.5) wears its colour (viz.match_ids)."""
    from ldmseg.metrics.panoptic import no_prediction

    if bool(gt_json) != bool(gt_dir) or bool(pred_json) != bool(pred_dir):
        raise LDMSegError("--gt-json goes with --gt-dir, and --pred-json with --pred-dir")
    if not gt_json and not pred_json:
        raise LDMSegError("nothing to draw: give --gt-json/--gt-dir, --pred-json/--pred-dir or both")
    gt = coco_panoptic.load_panoptic_json(gt_json) if gt_json else None
    pred_set = coco_panoptic.load_panoptic_json(pred_json, gt.categories if gt else None) if pred_json else None
    pred = pred_set.by_image_id if pred_set else None
    source = ImageSource(images)
    records = source.select((gt or pred_set).records, lambda r: (r.image_file, r.png_file))
    records = records[:limit] if limit else records
    log = outputs.SkipLog()

    def ids_of(folder: str, rec: coco_panoptic.PanopticRecord, image: np.ndarray) -> np.ndarray:
        ids = coco_panoptic.read_panoptic_ids(folder, rec)
        if ids.shape != image.shape[:2]:
            raise LDMSegError(f"{Path(folder) / rec.png_file}: size {ids.shape[::-1]} differs from its image "
                              f"{image.shape[1::-1]}")
        return ids

    def picture(rec: coco_panoptic.PanopticRecord) -> np.ndarray:
        image = source.image(rec.image_file, rec.png_file)
        panels, titles = [image], ["image"]
        gt_ids = ids_of(gt_dir, rec, image) if gt else None
        if gt_ids is not None:
            panels += [overlay(image, gt_ids), colorize(gt_ids)]
            titles += ["GT overlay", "GT"]
        if pred is not None:
            if rec.image_id not in pred:
                raise LDMSegError(no_prediction(rec.image_id, gt, pred_set, gt_json, pred_json))
            p_ids = ids_of(pred_dir, pred[rec.image_id], image)
            if gt_ids is not None:
                p_ids = match_ids(gt_ids, p_ids)
            panels += [overlay(image, p_ids), colorize(p_ids)]
            titles += ["prediction overlay", "prediction"]
        return grid(panels, titles)

    return _draw(records, lambda rec: rec.png_file, picture, out, log)


def visualize_maps(task: str, images: str, gt_dir: str | None, pred_dir: str | None, out: str,
                   limit: int | None = None, classes: str | None = None) -> int:
    """Semantic or depth maps (PNG folders named by image stem, as predict and `data synth` write them): one grid
    per image, the image, then the GT's and/or the prediction's map; semantic grids show each map over the image
    and alone, with a legend of the classes drawn; depth grids end in a colour bar. `classes` says the GT's label
    convention as evaluate's --classes does (metrics.semantic.GTConvention)."""
    from ldmseg.metrics.semantic import GTConvention

    if not gt_dir and not pred_dir:
        raise LDMSegError("nothing to draw: give --gt-dir, --pred-dir or both")
    for folder in (gt_dir, pred_dir):
        if folder and not Path(folder).is_dir():
            raise LDMSegError(f"{folder}: folder not found")
    first = Path(gt_dir or pred_dir)
    pngs = sorted(p.name for p in first.glob("*.png"))
    if not pngs:
        raise LDMSegError(f"{first}: no PNG files")
    source = ImageSource(images)
    pngs = source.select(pngs, lambda png: (None, png))
    pngs = pngs[:limit] if limit else pngs
    kind = task_spec(task).outputs[0]  # the map kind drawn: 'semantic' or 'depth'
    convention = GTConvention.of(pred_dir if gt_dir else None, classes) if kind == "semantic" else None
    categories = map_categories(gt_dir, pred_dir, convention)

    def sized(labels: np.ndarray, path: Path, image: np.ndarray) -> np.ndarray:
        if labels.shape != image.shape[:2]:
            raise LDMSegError(f"{path}: size {labels.shape[::-1]} differs from its image {image.shape[1::-1]}")
        return labels

    def picture(png: str) -> np.ndarray:
        image = source.image(None, png)
        panels, titles, drawn = [image], ["image"], []
        for name, folder in (("GT", gt_dir), ("prediction", pred_dir)):
            if not folder:
                continue
            path = Path(folder) / png
            if kind == "depth":
                panels.append(colorize_depth(sized(formats.read_depth_png(path), path, image)))
                titles.append(f"{name} depth")
                continue
            labels = convention.read(path) if name == "GT" else formats.read_label_png(path)
            colours = colorize_semantic(sized(labels, path, image), categories)
            panels += [blend(image, colours), colours]
            titles += [f"{name} overlay", name]
            drawn.append(labels.ravel())
        if kind == "depth":
            return with_depth_bar(grid(panels, titles))
        return with_legend(grid(panels, titles), class_colours(np.concatenate(drawn), categories))

    return _draw(pngs, lambda png: png, picture, out, outputs.SkipLog())


def map_categories(gt_dir: str | None, pred_dir: str | None, convention) -> list[dict] | None:
    """Names and colours of semantic ids: the predictions' categories.json, else the class list (--classes), else
    the categories of a COCO-panoptic JSON beside the GT folder (a `data synth` set's panoptic.json)."""
    from ldmseg.metrics.semantic import predicted_categories

    if convention is None:
        return None
    found = predicted_categories(pred_dir) if pred_dir else None
    if found is None and convention.classes is not None:
        found = convention.classes.categories()
    beside = Path(gt_dir).parent / "panoptic.json" if gt_dir else None
    if found is None and beside is not None and beside.is_file():
        try:
            found = list(coco_panoptic.load_panoptic_json(beside).categories.values())
        except LDMSegError:
            found = None
    return found


def _draw(items: list, png_of: Callable, picture: Callable, out: str, log: outputs.SkipLog) -> int:
    """Each item's picture, written as OUT/<stem>.png; unreadable inputs are skipped and listed (SkipLog)."""
    for item in tqdm(items, desc="visualising", unit="image"):
        made = log.attempt(png_of(item), lambda item=item: picture(item))
        if made is not None:
            formats.write_png(Path(out) / f"{Path(png_of(item)).stem}.png", made)
            log.succeeded()
    log.finish(Path(out))
    return log.done
