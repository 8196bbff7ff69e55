"""`ldmseg visualize`: image / ground truth / prediction grids for a COCO-panoptic set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from ldmseg.data import coco_panoptic, formats, outputs
from ldmseg.errors import LDMSegError
from ldmseg.viz import colorize, grid, overlay


def find_image(image_dir: Path, record: coco_panoptic.PanopticRecord) -> Path:
    """The image of a record: its `images[].file_name`, else the PNG's stem with a common suffix."""
    if record.image_file:
        return image_dir / record.image_file
    for suffix in (".jpg", ".png", ".jpeg"):
        path = image_dir / Path(record.png_file).with_suffix(suffix).name
        if path.exists():
            return path
    raise LDMSegError(f"{image_dir}: no image for {record.png_file}")


def visualize_sets(images: str, gt_json: str, gt_dir: str, out: str, pred_json: str | None = None,
                   pred_dir: str | None = None, limit: int | None = None) -> int:
    """Write one grid PNG per image (image, GT overlay, GT colours[, prediction overlay / colours])."""
    gt = coco_panoptic.load_panoptic_json(gt_json)
    pred = coco_panoptic.load_panoptic_json(pred_json, gt.categories).by_image_id if pred_json else None
    if pred is not None and not pred_dir:
        raise LDMSegError("--pred-dir is needed with --pred-json")
    records = gt.records[:limit] if limit else gt.records
    log = outputs.SkipLog()

    def picture(rec) -> np.ndarray:
        image = formats.read_rgb(find_image(Path(images), rec))
        gt_ids = coco_panoptic.read_panoptic_ids(gt_dir, rec)
        if gt_ids.shape != image.shape[:2]:
            raise LDMSegError(f"{Path(gt_dir) / rec.png_file}: size {gt_ids.shape[::-1]} differs from its image "
                              f"{image.shape[1::-1]}")
        panels, titles = [image, overlay(image, gt_ids), colorize(gt_ids)], ["image", "GT overlay", "GT"]
        if pred is not None:
            if rec.image_id not in pred:
                raise LDMSegError(f"{pred_json}: no prediction for image_id {rec.image_id!r}")
            p_ids = coco_panoptic.read_panoptic_ids(pred_dir, pred[rec.image_id])
            if p_ids.shape != gt_ids.shape:
                raise LDMSegError(f"{Path(pred_dir) / pred[rec.image_id].png_file}: size {p_ids.shape[::-1]} differs "
                                  f"from the GT's {gt_ids.shape[::-1]}")
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
