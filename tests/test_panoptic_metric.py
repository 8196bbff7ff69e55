"""Every panopticapi rule, with expected numbers worked out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ldmseg.data.synthetic import SceneConfig, generate_scene
from ldmseg.errors import LDMSegError
from ldmseg.metrics.panoptic import AGNOSTIC_CATEGORY, PanopticEvaluator, class_agnostic, pair_counts, pq_image
from ldmseg.metrics.panoptic_loop import pq_image_loop

CATS = [{"id": 1, "name": "a", "isthing": 1}, {"id": 2, "name": "b", "isthing": 1},
        {"id": 7, "name": "s", "isthing": 0}]


def row(*runs: tuple[int, int]) -> np.ndarray:
    """A 1xW id map from (id, length) runs."""
    return np.concatenate([np.full(n, i) for i, n in runs])[None]


def seg(i: int, cat: int = 1, area: int | None = None, crowd: int = 0) -> dict:
    return {"id": i, "category_id": cat, "iscrowd": crowd, **({"area": area} if area is not None else {})}


def score(gt, gt_segs, pred, pred_segs, cats=CATS, agnostic=False) -> dict:
    for s in gt_segs:
        s.setdefault("area", int((gt == s["id"]).sum()))
    ev = PanopticEvaluator(cats, class_agnostic=agnostic)
    ev.process(gt, gt_segs, pred, pred_segs)
    return ev.evaluate()


def test_match_needs_iou_above_half() -> None:
    gt = row((1, 10), (0, 10))
    # 8 of 10 pixels + 2 extra (on stuff-less background id 0 is VOID, so use another GT segment)
    gt = row((1, 10), (5, 10))
    good = row((0, 2), (3, 8), (3, 2), (0, 8))  # pred 3: 8 on seg 1, 2 on seg 5 -> IoU 8/12
    r = score(gt, [seg(1), seg(5, cat=7)], good, [seg(3)])
    assert r["per_class"][1] == pytest.approx({"pq": 8 / 12, "sq": 8 / 12, "rq": 1.0})
    # seg 5 (stuff) has no prediction: FN; class 7 -> pq 0, counted
    assert r["Stuff"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 1}
    bad = row((0, 4), (3, 6), (3, 4), (0, 6))  # 6 on seg 1, 4 on seg 5 -> IoU 6/14 < 0.5
    r = score(gt, [seg(1), seg(5, cat=7)], bad, [seg(3)])
    assert r["per_class"][1] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}  # FN 1, FP 1
    exactly_half = row((0, 5), (3, 5), (3, 0), (0, 10))  # 5 of 10, no extra -> IoU 0.5, not > 0.5
    r = score(gt, [seg(1), seg(5, cat=7)], exactly_half, [seg(3)])
    assert r["per_class"][1]["pq"] == 0.0


def test_void_is_removed_from_the_union() -> None:
    gt = row((1, 10), (0, 10))
    pred = row((0, 4), (3, 10), (0, 6))  # 6 px on seg 1, 4 px on VOID: IoU = 6 / (10 + 10 - 6 - 4) = 0.6
    r = score(gt, [seg(1)], pred, [seg(3)])
    assert r["All"]["pq"] == pytest.approx(0.6) and r["All"]["rq"] == 1.0


def test_gt_area_comes_from_json() -> None:
    gt = row((1, 10), (0, 10))
    pred = row((3, 10), (0, 10))
    r = score(gt, [seg(1, area=15)], pred, [seg(3)])  # IoU = 10 / (10 + 15 - 10) = 2/3
    assert r["All"]["pq"] == pytest.approx(10 / 15)


def test_unmatched_prediction_mostly_on_void_is_not_fp() -> None:
    gt = row((1, 10), (0, 10), (2, 10))
    on_void = row((3, 10), (4, 6), (4, 4, ), (0, 10))  # pred 4: 10 px, all on VOID
    r = score(gt, [seg(1), seg(2, cat=2)], on_void, [seg(3), seg(4, cat=2)])
    assert r["per_class"][2] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}  # seg 2 FN, pred 4 ignored
    assert r["per_class"][1]["pq"] == 1.0
    # pred 5 (cat 2): 4 px on VOID, 6 px on GT segment 1 -> 40% on VOID -> a real FP
    fp = row((3, 4), (5, 6), (5, 4), (0, 6), (0, 10))
    r = score(gt, [seg(1), seg(2, cat=2)], fp, [seg(3), seg(5, cat=2)])
    # class 1: pred 3 (4 px) vs seg 1 (10 px): IoU 0.4 -> FN 1, FP 1; class 2: FN (seg 2) + FP (pred 5)
    assert r["per_class"][1]["pq"] == 0.0 and r["per_class"][2]["rq"] == 0.0
    assert r["All"]["n"] == 2


def test_crowd_rules() -> None:
    gt = row((1, 10), (9, 10))  # 9: crowd region of category 1
    segs = lambda: [seg(1), seg(9, crowd=1)]  # noqa: E731
    same_cat = row((3, 10), (4, 7), (0, 3))  # pred 4 (cat 1): 7 px on the crowd, 0 elsewhere -> ignored
    r = score(gt, segs(), same_cat, [seg(3), seg(4)])
    assert r["per_class"][1] == {"pq": 1.0, "sq": 1.0, "rq": 1.0}
    other_cat = row((3, 10), (4, 7), (0, 3))
    r = score(gt, segs(), other_cat, [seg(3), seg(4, cat=2)])  # cat 2 has no crowd region: FP
    assert r["per_class"][2]["rq"] == 0.0 and r["All"]["n"] == 2
    # a crowd segment is never matched and never an FN, even when predicted exactly
    r = score(gt, segs(), row((3, 10), (4, 10)), [seg(3), seg(4)])
    assert r["per_class"][1]["rq"] == 1.0


def test_wrong_class_is_fn_plus_fp() -> None:
    gt = row((1, 10))
    r = score(gt, [seg(1)], row((3, 10)), [seg(3, cat=2)])
    assert r["All"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 2}
    r = score(gt, [seg(1)], row((3, 10)), [seg(3, cat=2)], agnostic=True)
    assert r["All"]["pq"] == 1.0 and "Stuff" not in r


def test_merged_split_dropped() -> None:
    gt = row((1, 10), (2, 3), (5, 7))
    segs = lambda: [seg(1), seg(2), seg(5, cat=7)]  # noqa: E731
    merged = row((3, 13), (6, 7))  # 3 covers seg 1 and 2: IoU(1) = 10/13, seg 2 FN
    r = score(gt, segs(), merged, [seg(3), seg(6, cat=7)])
    assert r["per_class"][1]["pq"] == pytest.approx((10 / 13) / (1 + 0.5))
    split = row((3, 7), (4, 3), (0, 3), (6, 7))  # seg 1 split 7/3: TP (0.7) + FP; seg 2 dropped (FN)
    r = score(gt, segs(), split, [seg(3), seg(4), seg(6, cat=7)])
    assert r["per_class"][1]["pq"] == pytest.approx(0.7 / (1 + 0.5 * 1 + 0.5 * 1))
    assert r["per_class"][1]["sq"] == pytest.approx(0.7)
    assert r["per_class"][1]["rq"] == pytest.approx(1 / 2)
    assert r["Stuff"]["pq"] == 1.0
    assert r["All"]["pq"] == pytest.approx((0.7 / 2 + 1.0) / 2)


def test_categories_without_segments_are_skipped() -> None:
    r = score(row((1, 4)), [seg(1)], row((3, 4)), [seg(3)])
    assert r["All"]["n"] == 1 and r["per_class"][2] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
    assert "Stuff" not in r  # no stuff category was seen: left out instead of dividing by zero


def test_prediction_consistency_errors() -> None:
    gt = row((1, 4))
    with pytest.raises(LDMSegError, match="in the PNG but not in segments_info"):
        score(gt, [seg(1)], row((3, 2), (4, 2)), [seg(3)])
    with pytest.raises(LDMSegError, match="in segments_info but not in the PNG"):
        score(gt, [seg(1)], row((3, 4)), [seg(3), seg(4)])
    with pytest.raises(LDMSegError, match="unknown category_id 99"):
        score(gt, [seg(1)], row((3, 4)), [seg(3, cat=99)])
    with pytest.raises(LDMSegError, match="differs from GT"):
        score(gt, [seg(1)], row((3, 5)), [seg(3)])


@pytest.mark.parametrize("seed", range(12))
def test_vectorised_matches_per_segment_loop(seed: int) -> None:
    """Random perturbations of real-looking scenes: shifted, merged, relabelled, VOID, crowd."""
    rng = np.random.default_rng(seed)
    scene = generate_scene(seed, SceneConfig.preset("dense" if seed % 2 else "default", 64))
    gt, gt_segs = scene.ids, scene.segments
    pred = np.roll(gt, rng.integers(-4, 5, 2), axis=(0, 1)).astype(np.int64)
    pred[rng.random(gt.shape) < 0.05] = 0
    if seed % 3 == 0:  # merge two segments
        pred[pred == 2] = 1
    if seed % 4 == 0:  # a big spurious segment
        pred[20:40, 10:50] = 999
    ci = {c["id"]: k for k, c in enumerate(__import__("ldmseg.data.synthetic", fromlist=["x"]).categories())}
    pred_segs = [{"id": int(u), "category_id": int(rng.choice(list(ci)) if rng.random() < 0.2 else
                                                   next((s["category_id"] for s in gt_segs if s["id"] == u), 1))}
                 for u in np.unique(pred) if u != 0]
    fast = pq_image(gt, gt_segs, pred, pred_segs, ci)
    slow = pq_image_loop(gt, gt_segs, pred, pred_segs, ci)
    assert (fast.tp == slow.tp).all() and (fast.fp == slow.fp).all() and (fast.fn == slow.fn).all()
    assert np.abs(fast.iou - slow.iou).max() < 1e-12


def _perturbed(scene, rng: np.random.Generator, cats: list[int]) -> tuple[np.ndarray, list[dict]]:
    """A prediction from a GT scene: shifted, holes to VOID, merges, a spurious block, some wrong classes."""
    pred = np.roll(scene.ids, rng.integers(-6, 7, 2), axis=(0, 1)).astype(np.int64)
    pred[rng.random(pred.shape) < 0.03] = 0
    ids = [u for u in np.unique(pred) if u]
    if len(ids) > 3:
        pred[pred == ids[1]] = ids[0]
    pred[rng.integers(0, 40):][:20, 5:45] = 4000 + int(rng.integers(100))
    cat_of = {s["id"]: s["category_id"] for s in scene.segments}
    return pred, [{"id": int(u), "category_id": int(rng.choice(cats)) if rng.random() < 0.2 or u not in cat_of
                   else cat_of[u]} for u in np.unique(pred) if u]


@pytest.mark.parametrize("agnostic", [False, True])
def test_matches_panopticapi_itself_on_random_sets(tmp_path: Path, agnostic: bool) -> None:
    """Randomised cross-check against the official pq_compute code (things, stuff, crowd, VOID), to 1e-9."""
    from panopticapi import evaluation  # test-only reference: scripts/run_tests.sh installs panopticapi-lite

    from ldmseg.data import formats
    from ldmseg.data.synthetic import categories

    cats = categories()
    rng = np.random.default_rng(0)
    pairs, ours = [], PanopticEvaluator(cats, class_agnostic=agnostic)
    for i in range(12):
        scene = generate_scene([5, i], SceneConfig.preset("dense" if i % 2 else "default", 96))
        pred, pred_segs = _perturbed(scene, rng, [c["id"] for c in cats])
        formats.write_panoptic_png(tmp_path / "gt" / f"{i}.png", scene.ids)
        formats.write_panoptic_png(tmp_path / "pred" / f"{i}.png", pred)
        gt_segs = scene.segments
        if agnostic:
            gt_segs, pred_segs = class_agnostic(gt_segs), class_agnostic(pred_segs)
        pairs.append(({"image_id": i, "file_name": f"{i}.png", "segments_info": gt_segs},
                      {"image_id": i, "file_name": f"{i}.png", "segments_info": pred_segs}))
        ours.process(scene.ids, gt_segs, pred, pred_segs)
    ref_cats = {1: AGNOSTIC_CATEGORY} if agnostic else {c["id"]: c for c in cats}
    ref = evaluation.pq_compute_single_core(0, pairs, str(tmp_path / "gt"), str(tmp_path / "pred"), ref_cats)
    mine = ours.evaluate()
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        try:
            expected, _ = ref.pq_average(ref_cats, isthing=isthing)
        except ZeroDivisionError:  # panopticapi divides by zero when no category of that kind counts
            assert name not in mine
            continue
        for key in ("pq", "sq", "rq", "n"):
            assert abs(mine[name][key] - expected[key]) < 1e-9, (name, key)


def test_pair_counts_equal_a_full_count() -> None:
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 5, (40, 50)).repeat(3, 1)
    pred = np.where(rng.random(gt.shape) < 0.1, 7, gt * 2)
    g, p, n = pair_counts(gt, pred)
    full = {}
    for a, b in zip(gt.ravel(), pred.ravel(), strict=True):
        full[(int(a), int(b))] = full.get((int(a), int(b)), 0) + 1
    assert dict(zip(zip(g.tolist(), p.tolist(), strict=True), n.tolist(), strict=True)) == full
    with pytest.raises(ValueError, match="0..2"):
        pair_counts(np.array([-1, 2]), np.array([0, 0]))
