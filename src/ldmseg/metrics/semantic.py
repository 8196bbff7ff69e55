"""Semantic segmentation: mIoU from a confusion matrix (ignore label 255 by default; ldmseg's own semantic
PNGs use 0 = ignore, classes 1..C)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldmseg.data import formats
from ldmseg.data.classes import BUILT_IN, ClassList, load_class_list
from ldmseg.errors import LDMSegError

IGNORE = 255


class SemanticEvaluator:
    """mIoU over labels 0..num_classes-1; pixels whose GT is `ignore_label` are ignored, and when that label is
    inside the range it is no class of the mean (a prediction of it is a miss of the GT class)."""

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
        if 0 <= self.ignore_label < self.num_classes:
            iou[self.ignore_label] = np.nan
            union[self.ignore_label] = 0
        total = self.confusion.sum()
        return {"miou": float(np.nanmean(iou)) if (union > 0).any() else 0.0,
                "pixel_accuracy": float(tp.sum() / total) if total else 0.0,
                "per_class_iou": iou.tolist()}


def paired_pngs(gt_dir: str | Path, pred_dir: str | Path) -> list[tuple[Path, Path]]:
    """(GT, prediction) PNG pairs by file name; every GT file needs its prediction."""
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    for d in (gt_dir, pred_dir):
        if not d.is_dir():
            raise LDMSegError(f"{d}: folder not found")
    gts = sorted(gt_dir.glob("*.png"))
    if not gts:
        raise LDMSegError(f"{gt_dir}: no PNG files")
    missing = [g.name for g in gts if not (pred_dir / g.name).exists()]
    if missing:
        raise LDMSegError(f"{pred_dir / missing[0]}: no prediction for this GT file ({len(missing)} missing)")
    return [(g, pred_dir / g.name) for g in gts]


GT_IDS = "ldmseg"  # --classes ldmseg: the GT PNGs hold ldmseg's ids (0 = ignore, 1..C), as predict writes them


def evaluate_semantic_dirs(gt_dir: str | Path, pred_dir: str | Path, num_classes: int = 256,
                           ignore_label: int = 0, classes: ClassList | str | None = None) -> dict:
    """mIoU, pixel accuracy and per-class IoU of single-channel class-id PNGs (ldmseg's: 0 = ignore). With a
    `classes` list (data.classes.ClassList, or its spec: a classes JSON or 'camvid') the GT PNGs hold that set's
    raw label values (e.g. CamVid's 0..10, 11 unlabelled), mapped to ldmseg's ids as training maps them;
    predictions are ldmseg's ids. A GT whose labels do not fit the predictions' categories.json is refused
    (GTConvention); classes='ldmseg' skips that check."""
    convention = GTConvention.of(pred_dir, classes, ignore_label)
    if convention.classes is not None:
        num_classes, ignore_label = len(convention.classes.names) + 1, 0
    ev, scored = SemanticEvaluator(num_classes, ignore_label), 0
    for gt_file, pred_file in paired_pngs(gt_dir, pred_dir):
        gt, pred = convention.read(gt_file), formats.read_label_png(pred_file)
        if gt.shape != pred.shape:
            raise LDMSegError(f"{pred_file}: size {pred.shape[::-1]} differs from its GT {gt.shape[::-1]}")
        for f, labels in ((gt_file, gt), (pred_file, pred)):
            bad = labels[(labels != ignore_label) & ((labels < 0) | (labels >= num_classes))]
            if bad.size:
                raise LDMSegError(f"{f}: class id {int(bad[0])} outside 0..{num_classes - 1}")
        ev.process(gt, pred)
        scored += int((gt != ignore_label).sum())
    if not scored:
        raise LDMSegError(f"{gt_dir}: no GT pixel to score: every pixel is the ignore label {ignore_label}")
    res = ev.evaluate()
    res["per_class_iou"] = {c: v for c, v in enumerate(res["per_class_iou"]) if v == v}  # present classes only
    return res


@dataclass(frozen=True)
class GTConvention:
    """How GT label PNGs are read against a prediction folder, so that a GT in one label convention is never scored
    against predictions in another: with a class list, its raw values mapped to ldmseg's ids; otherwise, where the
    predictions' categories.json says which ids they use, every GT value must be one of them or the ignore label."""

    classes: ClassList | None = None
    predicted: dict[int, str] | None = None
    ignore: int = 0
    source: Path | None = None

    @classmethod
    def of(cls, pred_dir: str | Path | None, classes: ClassList | str | None, ignore_label: int = 0) -> GTConvention:
        """The convention of `classes` (a ClassList, a spec, 'ldmseg' or None) against `pred_dir`'s categories;
        refuses a class list that is not the predictions' classes, and predictions of a built-in set (CamVid) with
        no `classes` said: that set's label PNGs hold raw values that are valid ids too, so nothing tells them
        apart."""
        if classes == GT_IDS:
            return cls()
        if isinstance(classes, str):
            classes = load_class_list(classes)
        categories = predicted_categories(pred_dir) if pred_dir is not None else None
        if categories is None:
            return cls(classes)
        source = Path(pred_dir).parent / "categories.json"
        predicted = {c["id"]: c["name"] for c in categories}
        if classes is not None:
            if _ids_of(classes) != predicted:
                raise LDMSegError(f"--classes: {_described(_ids_of(classes))} are not the predictions' classes "
                                  f"({source}: {_described(predicted)}): the GT and the predictions use different "
                                  "label sets")
            return cls(classes)
        for name in BUILT_IN:
            known = load_class_list(name)
            if _ids_of(known) == predicted:
                last = known.first_value + len(known.names) - 1
                raise LDMSegError(f"{source}: the predictions use the classes of {known.title or name}, whose label "
                                  f"PNGs hold raw values ({known.first_value}..{last}, {known.ignore} unlabelled), not "
                                  f"ldmseg's ids: give --classes {name} for such GT (or --classes {GT_IDS} where it "
                                  "holds ldmseg's ids, 0 = ignore)")
        return cls(None, predicted, ignore_label, source)

    def read(self, gt_file: Path) -> np.ndarray:
        """A GT PNG's labels in ldmseg's ids; a value that fits no predicted class is one line naming --classes."""
        gt = formats.read_label_png(gt_file)
        if self.classes is not None:
            return self.classes.to_semantic(gt, gt_file)
        if self.predicted is not None:
            stray = [int(v) for v in np.unique(gt) if int(v) != self.ignore and int(v) not in self.predicted]
            if stray:
                raise LDMSegError(f"{gt_file}: GT value {stray[0]} is neither a predicted class ({self.source}: "
                                  f"{_described(self.predicted)}) nor the ignore label {self.ignore}: the GT uses "
                                  "another label convention; for a data set's raw label values give --classes (a "
                                  f"classes JSON or 'camvid'), to score the ids as they are --classes {GT_IDS}")
        return gt


def _ids_of(classes: ClassList) -> dict[int, str]:
    return {k + 1: name for k, name in enumerate(classes.names)}


def _described(ids: dict[int, str]) -> str:
    """A class set in short for error lines: '12 ids, 1..12 (ellipse, box, triangle, ...)'."""
    keys = sorted(ids)
    span = f"{keys[0]}..{keys[-1]}" if keys == list(range(keys[0], keys[-1] + 1)) else ", ".join(map(str, keys[:8]))
    names = [ids[k] for k in keys if ids[k]]
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"{len(keys)} ids, {span}" + (f" ({shown})" if names else "")


def predicted_categories(pred_dir: str | Path) -> list[dict] | None:
    """The categories of a prediction folder: the categories.json `ldmseg predict` writes beside OUT/semantic (None
    where there is none); colours kept where given. It decides which label convention is scored, so one that does
    not read as {"categories": [{"id": int, "name": str}, ...]} is one line naming it, never silently skipped."""
    path = Path(pred_dir).parent / "categories.json"
    if not path.is_file():
        return None
    data = formats.read_json(path)
    listed = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(listed, list) or not all(_is_category(c) for c in listed):
        raise LDMSegError(f'{path}: expected {{"categories": [{{"id": integer, "name": text}}, ...]}}')
    return [{"id": c["id"], "name": c["name"], **({"color": list(c["color"])} if "color" in c else {})}
            for c in listed] or None


def _is_category(c: object) -> bool:
    return (isinstance(c, dict) and isinstance(c.get("id"), int) and not isinstance(c["id"], bool)
            and isinstance(c.get("name"), str) and (isinstance(c.get("color"), list) or "color" not in c))


def predicted_names(pred_dir: str | Path) -> dict[int, str] | None:
    """Class names of a prediction folder's categories.json (predicted_categories), None where there is none."""
    categories = predicted_categories(pred_dir)
    return {c["id"]: c["name"] for c in categories} if categories else None


def semantic_names(pred_dir: str | Path, classes: str | None) -> dict[int, str] | None:
    """The names a semantic table shows: the class list's (`--classes`), else the predictions' categories.json."""
    if classes and classes != GT_IDS:
        return _ids_of(load_class_list(classes))
    return predicted_names(pred_dir)


def format_semantic(res: dict, names: dict[int, str] | None = None) -> str:
    """The scores x100, one line per class present, with its name where `names` gives one."""
    names = names or {}
    lines = [f"mIoU {100 * res['miou']:.2f}   pixel accuracy {100 * res['pixel_accuracy']:.2f}", "class          IoU"]
    lines += [f"{c:5d} {names.get(c, ''):<12.12s} {100 * v:6.2f}" for c, v in sorted(res["per_class_iou"].items())]
    return "\n".join(lines)
