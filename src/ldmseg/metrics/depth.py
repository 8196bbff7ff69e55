"""Depth: RMSE, AbsRel and delta < 1.25 of relative depth in [0, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ldmseg.data import formats
from ldmseg.errors import LDMSegError


class DepthEvaluator:
    """Pixel-pooled RMSE, mean absolute relative error and the share of pixels with
    max(pred / GT, GT / pred) < 1.25, over valid pixels (GT > `min_depth`)."""

    def __init__(self, min_depth: float = 1e-3):
        self.min_depth = min_depth
        self.reset()

    def reset(self) -> None:
        self.sq_err = self.rel_err = 0.0
        self.count = self.within = 0

    def process(self, gt: np.ndarray, pred: np.ndarray, valid: np.ndarray | None = None) -> None:
        gt, pred = np.asarray(gt, np.float64), np.asarray(pred, np.float64)
        if gt.shape != pred.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from GT {gt.shape}")
        mask = gt > self.min_depth
        if valid is not None:
            mask &= np.asarray(valid, bool)
        diff = pred[mask] - gt[mask]
        self.sq_err += float((diff**2).sum())
        self.rel_err += float((np.abs(diff) / gt[mask]).sum())
        self.count += int(mask.sum())
        p, g = np.maximum(pred[mask], self.min_depth), gt[mask]
        self.within += int((np.maximum(p / g, g / p) < 1.25).sum())

    def evaluate(self) -> dict:
        if self.count == 0:
            return {"rmse": float("nan"), "absrel": float("nan"), "delta1": float("nan"), "pixels": 0}
        return {"rmse": (self.sq_err / self.count) ** 0.5, "absrel": self.rel_err / self.count,
                "delta1": self.within / self.count, "pixels": self.count}


def evaluate_depth_dirs(gt_dir: str | Path, pred_dir: str | Path) -> dict:
    """RMSE / AbsRel / delta < 1.25 of 16-bit depth PNGs (uint16 = depth x 65535), paired by file name."""
    from ldmseg.metrics.semantic import paired_pngs

    ev = DepthEvaluator()
    for gt_file, pred_file in paired_pngs(gt_dir, pred_dir):
        gt, pred = formats.read_depth_png(gt_file), formats.read_depth_png(pred_file)
        if gt.shape != pred.shape:
            raise LDMSegError(f"{pred_file}: size {pred.shape[::-1]} differs from its GT {gt.shape[::-1]}")
        ev.process(gt, pred)
    if not ev.count:
        raise LDMSegError(f"{gt_dir}: no GT pixel to score: every depth is <= {ev.min_depth:g} (constant-zero GT "
                          "cannot be scored)")
    return ev.evaluate()


def format_depth(res: dict) -> str:
    return (f"RMSE {res['rmse']:.4f}   AbsRel {res['absrel']:.4f}   delta<1.25 {100 * res['delta1']:.2f}%   "
            f"({res['pixels']} pixels)")
