"""Depth: RMSE and AbsRel of relative depth in [0, 1]."""

from __future__ import annotations

import numpy as np


class DepthEvaluator:
    """Pixel-pooled RMSE and mean absolute relative error over valid pixels (GT > `min_depth`)."""

    def __init__(self, min_depth: float = 1e-3):
        self.min_depth = min_depth
        self.reset()

    def reset(self) -> None:
        self.sq_err = self.rel_err = 0.0
        self.count = 0

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

    def evaluate(self) -> dict:
        if self.count == 0:
            return {"rmse": float("nan"), "absrel": float("nan"), "pixels": 0}
        return {"rmse": (self.sq_err / self.count) ** 0.5, "absrel": self.rel_err / self.count,
                "pixels": self.count}
