"""Semantic segmentation: mIoU from a confusion matrix (ignore label 255)."""

from __future__ import annotations

import numpy as np

IGNORE = 255


class SemanticEvaluator:
    """mIoU over `num_classes` classes 0..C-1; pixels whose GT is 255 are ignored."""

    def __init__(self, num_classes: int, ignore_label: int = IGNORE):
        self.num_classes, self.ignore_label = num_classes, ignore_label
        self.reset()

    def reset(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)

    def process(self, gt: np.ndarray, pred: np.ndarray) -> None:
        gt, pred = np.asarray(gt).ravel().astype(np.int64), np.asarray(pred).ravel().astype(np.int64)
        if gt.shape != pred.shape:
            raise ValueError(f"prediction has {pred.size} pixels, GT {gt.size}")
        keep = gt != self.ignore_label
        gt, pred = gt[keep], pred[keep]
        bad = (gt < 0) | (gt >= self.num_classes) | (pred < 0) | (pred >= self.num_classes)
        if bad.any():
            first = int(np.where(bad, np.where((gt < 0) | (gt >= self.num_classes), gt, pred), 0)[bad][0])
            raise ValueError(f"label out of range 0..{self.num_classes - 1}: {first}")
        self.confusion += np.bincount(gt * self.num_classes + pred,
                                      minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)

    def evaluate(self) -> dict:
        """mIoU over classes present in GT or prediction; pixel accuracy; per-class IoU (NaN if absent)."""
        tp = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
        total = self.confusion.sum()
        return {"miou": float(np.nanmean(iou)) if (union > 0).any() else 0.0,
                "pixel_accuracy": float(tp.sum() / total) if total else 0.0,
                "per_class_iou": iou.tolist()}
