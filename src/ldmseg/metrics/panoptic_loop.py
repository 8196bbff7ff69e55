"""The same PQ rules written as a plain per-segment loop over boolean masks.

Slow and obvious on purpose: it cross-checks the vectorised `pq_image` in the tests and is
the baseline of `bench/evaluate_speed.py`. Not used by the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ldmseg.metrics.panoptic import PQStat


def pq_image_loop(gt_ids: np.ndarray, gt_segments: Sequence[dict], pred_ids: np.ndarray,
                  pred_segments: Sequence[dict], cat_index: dict[int, int]) -> PQStat:
    stat = PQStat.zeros(len(cat_index))
    void = gt_ids == 0
    pred_area = {p["id"]: int((pred_ids == p["id"]).sum()) for p in pred_segments}
    gt_matched, pred_matched = set(), set()
    for g in gt_segments:
        if g.get("iscrowd", 0) == 1:
            continue
        g_mask = gt_ids == g["id"]
        for p in pred_segments:
            if p["category_id"] != g["category_id"]:
                continue
            p_mask = pred_ids == p["id"]
            inter = int((g_mask & p_mask).sum())
            if inter == 0:
                continue
            union = pred_area[p["id"]] + g["area"] - inter - int((p_mask & void).sum())
            iou = inter / union
            if iou > 0.5:
                k = cat_index[g["category_id"]]
                stat.tp[k] += 1
                stat.iou[k] += iou
                gt_matched.add(g["id"])
                pred_matched.add(p["id"])
    crowd = {}
    for g in gt_segments:
        if g["id"] in gt_matched:
            continue
        if g.get("iscrowd", 0) == 1:
            crowd[g["category_id"]] = g["id"]
            continue
        stat.fn[cat_index[g["category_id"]]] += 1
    for p in pred_segments:
        if p["id"] in pred_matched:
            continue
        p_mask = pred_ids == p["id"]
        ignored = int((p_mask & void).sum())
        if p["category_id"] in crowd:
            ignored += int((p_mask & (gt_ids == crowd[p["category_id"]])).sum())
        if ignored / pred_area[p["id"]] > 0.5:
            continue
        stat.fp[cat_index[p["category_id"]]] += 1
    return stat
