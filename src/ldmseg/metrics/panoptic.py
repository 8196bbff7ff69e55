"""Panoptic quality (PQ / SQ / RQ) by exactly the rules of cocodataset/panopticapi's pq_compute.

Rules (docs/design.md, "Evaluation"): a prediction matches a GT segment of the same category, not crowd, with
IoU > 0.5, where the union leaves out the prediction's pixels on VOID. Unmatched non-crowd GT
are FN. An unmatched prediction is an FP unless more than half of it lies on VOID plus the
crowd region of its category. GT areas come from the JSON, prediction areas from the PNG.

Why hand-written: panopticapi is a test-time reference only (not a runtime dependency), and
torchmetrics' PanopticQuality uses other VOID/crowd rules. Here each image costs one pass over its
pixels (`pair_counts`: only the starts of runs of equal (gt, pred) pairs are gathered); id lookups
and the per-pair rules then run on the few overlapping pairs.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ldmseg.data import coco_panoptic, formats
from ldmseg.errors import LDMSegError

AGNOSTIC_CATEGORY = {"id": 1, "name": "object", "supercategory": "object", "isthing": 1}


def class_agnostic(segments: list[dict]) -> list[dict]:
    """Every segment becomes category 1 (the paper's Table 1 protocol)."""
    return [{**s, "category_id": 1} for s in segments]


def segments_from_ids(ids: np.ndarray, category_id: int = 1) -> list[dict]:
    """segments_info for an id map whose ids are its segments (0 = VOID), areas from the map."""
    uniq, counts = np.unique(ids[ids != formats.VOID], return_counts=True)
    return [{"id": int(u), "category_id": category_id, "iscrowd": 0, "area": int(c)}
            for u, c in zip(uniq, counts, strict=True)]


def pair_counts(gt_ids: np.ndarray, pred_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gt id, pred id, pixel count) of every pair of ids that overlaps, touching each pixel once.

    Neighbouring pixels mostly carry the same pair, so only the pixels that start a run of equal pairs in
    raster order (~1 % of them on real maps) are gathered, packed into one int64 key and counted; the
    run lengths are the counts. Ids must lie in 0..2^31-1 (COCO's are < 2^24).
    """
    gt, pred = gt_ids.ravel(), pred_ids.ravel()
    n = gt.size
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.empty(n, bool)
    starts[0] = True
    np.not_equal(gt[1:], gt[:-1], out=starts[1:])
    starts[1:] |= pred[1:] != pred[:-1]
    first = np.flatnonzero(starts)
    g, p = gt[first].astype(np.int64), pred[first].astype(np.int64)
    if g.min() < 0 or p.min() < 0 or max(g.max(), p.max()) >= 2**31:
        raise ValueError("segment ids must lie in 0..2^31-1")
    keys, inverse = np.unique(g << 31 | p, return_inverse=True)
    counts = np.bincount(inverse, weights=np.diff(first, append=n)).astype(np.int64)
    return keys >> 31, keys & (2**31 - 1), counts


def _positions(values: np.ndarray, seg_ids: np.ndarray) -> np.ndarray:
    """1-based index of each value in `seg_ids` (0 where absent); both small arrays."""
    if not len(seg_ids):
        return np.zeros(len(values), np.int64)
    order = np.argsort(seg_ids, kind="stable")
    at = np.searchsorted(seg_ids[order], values).clip(max=len(seg_ids) - 1)
    return np.where(seg_ids[order][at] == values, order[at] + 1, 0)


@dataclass
class PQStat:
    """Per-category sums, indexed like `categories` (iou, tp, fp, fn)."""

    iou: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    @classmethod
    def zeros(cls, n: int) -> PQStat:
        return cls(np.zeros(n), np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64))

    def __iadd__(self, other: PQStat) -> PQStat:
        self.iou += other.iou
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        return self


def pq_image(gt_ids: np.ndarray, gt_segments: Sequence[dict], pred_ids: np.ndarray,
             pred_segments: Sequence[dict], cat_index: dict[int, int], where: str = "") -> PQStat:
    """PQ statistics of one image. Raises LDMSegError on inconsistent predictions."""
    if gt_ids.shape != pred_ids.shape:
        raise LDMSegError(f"{where}: prediction size {pred_ids.shape[::-1]} differs from GT {gt_ids.shape[::-1]}")
    for segs, kind in ((gt_segments, "GT"), (pred_segments, "prediction")):
        for s in segs:
            if s["category_id"] not in cat_index:
                raise LDMSegError(f"{where}: {kind} segment {s['id']} has unknown category_id {s['category_id']}")
    g_ids = np.array([s["id"] for s in gt_segments], np.int64)
    p_ids = np.array([s["id"] for s in pred_segments], np.int64)
    g_cat = np.array([cat_index[s["category_id"]] for s in gt_segments], np.int64)
    p_cat = np.array([cat_index[s["category_id"]] for s in pred_segments], np.int64)
    g_crowd = np.array([s.get("iscrowd", 0) == 1 for s in gt_segments], bool)
    g_area = np.array([s["area"] for s in gt_segments], np.float64)
    G, P = len(g_ids), len(p_ids)

    try:
        g_val, p_val, n_pix = pair_counts(gt_ids, pred_ids)
    except ValueError as e:
        raise LDMSegError(f"{where}: {e}") from None
    gi = _positions(g_val, g_ids)
    gi = np.where(gi > 0, gi, np.where(g_val == formats.VOID, 0, G + 1))  # G+1: id not in GT JSON
    pi = _positions(p_val, p_ids)
    stray = (pi == 0) & (p_val != formats.VOID)
    if stray.any():
        raise LDMSegError(f"{where}: segment id {int(p_val[stray][0])} is in the PNG but not in segments_info")
    counts = np.zeros((G + 2, P + 1), np.int64)
    np.add.at(counts, (gi, pi), n_pix)
    p_area = counts[:, 1:].sum(0)
    if P and (p_area == 0).any():
        missing = int(p_ids[np.argmax(p_area == 0)])
        raise LDMSegError(f"{where}: segment id {missing} is in segments_info but not in the PNG")

    inter = counts[1:G + 1, 1:]
    on_void = counts[0, 1:]
    candidate = (inter > 0) & ~g_crowd[:, None] & (g_cat[:, None] == p_cat[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (p_area[None, :] + g_area[:, None] - inter - on_void[None, :])
    matched = candidate & (iou > 0.5)

    n = len(cat_index)
    stat = PQStat.zeros(n)
    rows, cols = np.nonzero(matched)
    np.add.at(stat.iou, g_cat[rows], iou[rows, cols])
    np.add.at(stat.tp, g_cat[rows], 1)
    gt_unmatched = ~matched.any(1)
    np.add.at(stat.fn, g_cat[gt_unmatched & ~g_crowd], 1)

    crowd_row = np.full(n, -1)  # panopticapi keeps the last crowd segment of each category
    for r in np.nonzero(g_crowd & gt_unmatched)[0]:
        crowd_row[g_cat[r]] = r
    ignored = on_void.astype(np.float64)
    has_crowd = crowd_row[p_cat] >= 0 if P else np.zeros(0, bool)
    ignored[has_crowd] += inter[crowd_row[p_cat[has_crowd]], np.nonzero(has_crowd)[0]]
    is_fp = ~matched.any(0) & ~(ignored / np.maximum(p_area, 1) > 0.5)
    np.add.at(stat.fp, p_cat[is_fp], 1)
    return stat


def pq_average(stat: PQStat, categories: list[dict], isthing: bool | None) -> tuple[dict | None, dict]:
    """panopticapi's PQStat.pq_average; returns (None, per_class) when no category counts."""
    pq = sq = rq = 0.0
    n = 0
    per_class = {}
    for k, cat in enumerate(categories):
        if isthing is not None and (cat.get("isthing", 0) == 1) != isthing:
            continue
        tp, fp, fn, iou = int(stat.tp[k]), int(stat.fp[k]), int(stat.fn[k]), float(stat.iou[k])
        if tp + fp + fn == 0:
            per_class[cat["id"]] = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
            continue
        n += 1
        pq_c = iou / (tp + 0.5 * fp + 0.5 * fn)
        sq_c = iou / tp if tp != 0 else 0
        rq_c = tp / (tp + 0.5 * fp + 0.5 * fn)
        per_class[cat["id"]] = {"pq": pq_c, "sq": sq_c, "rq": rq_c}
        pq, sq, rq = pq + pq_c, sq + sq_c, rq + rq_c
    if n == 0:
        return None, per_class
    return {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n}, per_class


@dataclass
class PanopticEvaluator:
    """Accumulates PQ over images (detectron2 style: reset / process / evaluate)."""

    categories: list[dict]
    class_agnostic: bool = False
    stat: PQStat = field(init=False)

    def __post_init__(self) -> None:
        if self.class_agnostic:
            self.categories = [AGNOSTIC_CATEGORY]
        self.cat_index = {int(c["id"]): k for k, c in enumerate(self.categories)}
        self.reset()

    def reset(self) -> None:
        self.stat = PQStat.zeros(len(self.categories))
        self.num_images = 0

    def process(self, gt_ids: np.ndarray, gt_segments: Sequence[dict], pred_ids: np.ndarray,
                pred_segments: Sequence[dict], where: str = "") -> None:
        if self.class_agnostic:
            gt_segments, pred_segments = class_agnostic(list(gt_segments)), class_agnostic(list(pred_segments))
        self.stat += pq_image(np.asarray(gt_ids), gt_segments, np.asarray(pred_ids), pred_segments,
                              self.cat_index, where)
        self.num_images += 1

    def evaluate(self) -> dict:
        """pq_compute's result shape: All / Things / Stuff (left out when empty) and per_class."""
        results: dict = {}
        for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
            summary, per_class = pq_average(self.stat, self.categories, isthing)
            if summary is not None:
                results[name] = summary
            if name == "All":
                results["per_class"] = per_class
        return results


def _evaluate_chunk(args: tuple) -> PQStat:
    pairs, gt_dir, pred_dir, categories, agnostic = args
    ev = PanopticEvaluator(categories, agnostic)
    for gt_rec, pred_rec in pairs:
        gt_png, pred_png = Path(gt_dir) / gt_rec.png_file, Path(pred_dir) / pred_rec.png_file
        gt_ids = formats.read_panoptic_png(gt_png)
        pred_ids = formats.read_panoptic_png(pred_png)
        ev.process(gt_ids, gt_rec.segments, pred_ids, pred_rec.segments, where=str(pred_png))
    return ev.stat


def single_category_warning(gt: coco_panoptic.PanopticSet, pred: coco_panoptic.PanopticSet) -> str | None:
    """A sentence when the predictions use one category and the GT several: a class-agnostic model
    (task instances) scored class-aware, which is almost never what was meant."""
    used = {s["category_id"] for r in pred.records for s in r.segments}
    gt_used = {s["category_id"] for r in gt.records for s in r.segments}
    if len(used) == 1 and len(gt_used) > 1:
        return (f"every predicted segment has category {used.pop()} while the GT uses {len(gt_used)}: a "
                "class-agnostic prediction (task instances)? Score it with --task instances, or predict "
                "--task panoptic")
    return None


def no_prediction(image_id: object, gt: coco_panoptic.PanopticSet, pred: coco_panoptic.PanopticSet,
                  gt_json: str | Path, pred_json: str | Path) -> str:
    """The line for a GT image the predictions lack: both flags named, how many are missing, and the likely cause
    when the predictions name their images by file stem (predict without --gt-json)."""
    have = pred.by_image_id
    missing = sum(r.image_id not in have for r in gt.records)
    stems = {Path(r.png_file).stem for r in gt.records}
    cause = ("its image ids are file names: predict with --gt-json GT.json keeps the GT's ids"
             if any(str(r.image_id) in stems for r in pred.records) else "--pred-json must use --gt-json's image ids")
    return (f"--pred-json {pred_json}: no prediction for image_id {image_id!r} of --gt-json {gt_json} ({missing} of "
            f"{len(gt.records)} GT images have none; {cause})")


def evaluate_files(gt_json: str | Path, gt_dir: str | Path, pred_json: str | Path, pred_dir: str | Path,
                   class_agnostic: bool = False, workers: int = 1, warn=None) -> dict:
    """Score a COCO-panoptic prediction set against its ground truth, like panopticapi's pq_compute.
    `warn(message)` hears of a single-category prediction scored class-aware."""
    gt = coco_panoptic.load_panoptic_json(gt_json, need_area=True)
    pred = coco_panoptic.load_panoptic_json(pred_json, categories=gt.categories)
    if warn is not None and not class_agnostic and (message := single_category_warning(gt, pred)):
        warn(message)
    by_id = pred.by_image_id
    pairs = []
    for rec in gt.records:
        if rec.image_id not in by_id:
            raise LDMSegError(no_prediction(rec.image_id, gt, pred, gt_json, pred_json))
        pairs.append((rec, by_id[rec.image_id]))
    categories = list(gt.categories.values())
    ev = PanopticEvaluator(categories, class_agnostic)
    workers = max(1, min(workers, len(pairs)))
    chunks = [(pairs[k::workers], gt_dir, pred_dir, categories, class_agnostic) for k in range(workers)]
    if workers == 1:
        stats = [_evaluate_chunk(chunks[0])]
    else:
        with mp.get_context("fork").Pool(workers) as pool:
            stats = pool.map(_evaluate_chunk, chunks)
    for s in stats:
        ev.stat += s
    ev.num_images = len(pairs)
    return ev.evaluate()


def format_table(results: dict) -> str:
    """The familiar panopticapi table, x100."""
    lines = [f"{'':10s}|{'PQ':>8s}{'SQ':>8s}{'RQ':>8s}{'N':>6s}", "-" * 40]
    for name in ("All", "Things", "Stuff"):
        if name in results:
            r = results[name]
            lines.append(f"{name:10s}|{100 * r['pq']:8.2f}{100 * r['sq']:8.2f}{100 * r['rq']:8.2f}{r['n']:6d}")
    return "\n".join(lines)
