"""mIoU and depth metrics with hand-computed expectations."""

from __future__ import annotations

import numpy as np
import pytest

from ldmseg.metrics.depth import DepthEvaluator
from ldmseg.metrics.semantic import SemanticEvaluator


def test_miou_by_hand() -> None:
    ev = SemanticEvaluator(3)
    gt = np.array([0, 0, 1, 1, 2, 255])
    pred = np.array([0, 1, 1, 1, 0, 2])
    ev.process(gt, pred)
    # class 0: tp 1, union = gt 2 + pred 2 - 1 = 3; class 1: tp 2, union 2 + 3 - 2 = 3; class 2: tp 0, union 1
    r = ev.evaluate()
    assert r["per_class_iou"] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert r["miou"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert r["pixel_accuracy"] == pytest.approx(3 / 5)
    ev.reset()
    ev.process(np.array([0, 0]), np.array([0, 0]))
    assert ev.evaluate()["miou"] == 1.0  # absent classes are left out, not counted as 0
    with pytest.raises(ValueError, match="out of range"):
        ev.process(np.array([5]), np.array([0]))


def test_depth_by_hand() -> None:
    ev = DepthEvaluator()
    gt = np.array([0.5, 0.25, 1.0, 0.0])  # last pixel invalid (no depth)
    pred = np.array([0.6, 0.25, 0.8, 0.9])
    ev.process(gt, pred)
    r = ev.evaluate()
    assert r["rmse"] == pytest.approx(np.sqrt((0.01 + 0 + 0.04) / 3))
    assert r["absrel"] == pytest.approx((0.1 / 0.5 + 0 + 0.2 / 1.0) / 3)
    assert r["pixels"] == 3
