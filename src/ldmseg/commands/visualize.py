"""`ldmseg visualize`: image / ground truth / prediction grids for COCO-panoptic sets (GT, predictions or both)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from ldmseg.data import coco_panoptic, formats, outputs
from ldmseg.errors import LDMSegError
from ldmseg.viz import colorize, grid, match_ids, overlay


def find_image(image_dir: Path, record: coco_panoptic.PanopticRecord) -> Path:
    """The image of a record: its `images[].file_name`, else the PNG's stem with a common suffix."""
    if record.image_file:
        return image_dir / record.image_file
    stem = Path(record.png_file).stem
    for name in [stem + s for s in formats.IMAGE_SUFFIXES] + [stem + s.upper() for s in formats.IMAGE_SUFFIXES]:
        if (image_dir / name).exists():
            return image_dir / name
    raise LDMSegError(f"{image_dir}: no image for {record.png_file}")


def visualize_sets(images: str, gt_json: str | None, gt_dir: str | None, out: str, pred_json: str | None = None,
                   pred_dir: str | None = None, limit: int | None = None) -> int:
    """Write one grid PNG per image: the image, then overlay and colours of the GT and/or the prediction. Side by
    side, a predicted segment that matches a GT segment (IoU > 0.5) wears its colour (viz.match_ids)."""
    if bool(gt_json) != bool(gt_dir) or bool(pred_json) != bool(pred_dir):
        raise LDMSegError("--gt-json goes with --gt-dir, and --pred-json with --pred-dir")
    if not gt_json and not pred_json:
        raise LDMSegError("nothing to draw: give --gt-json/--gt-dir, --pred-json/--pred-dir or both")
    gt = coco_panoptic.load_panoptic_json(gt_json) if gt_json else None
    pred_set = coco_panoptic.load_panoptic_json(pred_json, gt.categories if gt else None) if pred_json else None
    pred = pred_set.by_image_id if pred_set else None
    records = (gt or pred_set).records
    records = records[:limit] if limit else records
    log = outputs.SkipLog()

    def ids_of(folder: str, rec: coco_panoptic.PanopticRecord, image: np.ndarray) -> np.ndarray:
        ids = coco_panoptic.read_panoptic_ids(folder, rec)
        if ids.shape != image.shape[:2]:
            raise LDMSegError(f"{Path(folder) / rec.png_file}: size {ids.shape[::-1]} differs from its image "
                              f"{image.shape[1::-1]}")
        return ids

    def picture(rec: coco_panoptic.PanopticRecord) -> np.ndarray:
        image = formats.read_rgb(find_image(Path(images), rec))
        panels, titles = [image], ["image"]
        gt_ids = ids_of(gt_dir, rec, image) if gt else None
        if gt_ids is not None:
            panels += [overlay(image, gt_ids), colorize(gt_ids)]
            titles += ["GT overlay", "GT"]
        if pred is not None:
            if rec.image_id not in pred:
                raise LDMSegError(f"{pred_json}: no prediction for image_id {rec.image_id!r}")
            p_ids = ids_of(pred_dir, pred[rec.image_id], image)
            if gt_ids is not None:
                p_ids = match_ids(gt_ids, p_ids)
            panels += [overlay(image, p_ids), colorize(p_ids)]
            titles += ["prediction overlay", "prediction"]
        return grid(panels, titles)

    for rec in tqdm(records, desc="visualising", unit="image"):
        made = log.attempt(rec.png_file, lambda rec=rec: picture(rec))
        if made is not None:
            formats.write_png(Path(out) / f"{Path(rec.png_file).stem}.png", made)
            log.succeeded()
    log.finish(Path(out))
    return log.done
