"""COCO-panoptic JSON: the one reader every command uses, and the rules a set must keep (panopticapi's own,
checked up front so that a bad file is one line naming it, never a wrong score).

Kept free of torch so that `ldmseg evaluate` starts fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ldmseg.data.formats import VOID, read_json, read_panoptic_png
from ldmseg.data.outputs import is_plain_name
from ldmseg.errors import LDMSegError


@dataclass
class PanopticRecord:
    """One image of a COCO-panoptic set."""

    image_id: Any
    image_file: str | None
    png_file: str
    segments: list[dict]
    width: int | None = None
    height: int | None = None


@dataclass
class PanopticSet:
    """A parsed COCO-panoptic JSON: records in file order and categories by id."""

    json_path: Path
    records: list[PanopticRecord]
    categories: dict[int, dict]

    @property
    def by_image_id(self) -> dict[Any, PanopticRecord]:
        return {r.image_id: r for r in self.records}


def _require(cond: bool, path: Path, msg: str) -> None:
    if not cond:
        raise LDMSegError(f"{path}: {msg}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


MAX_SEGMENT_ID = 2**24 - 1  # ids are RGB-encoded in 24 bits; 0 is VOID


def _is_flag(value: Any) -> bool:
    """isthing / iscrowd: 0 or 1 (JSON false / true too)."""
    return value in (0, 1) and (isinstance(value, bool) or _is_int(value))


def _bad_area(area: Any, need_area: bool) -> str | None:
    if area is None and not need_area:
        return None
    if not isinstance(area, (int, float)) or isinstance(area, bool):
        return f"'area' must be a number, got {area!r}"
    if not math.isfinite(area) or not 0 <= area <= 2**40:
        return f"'area' must be a finite pixel count >= 0, got {area!r}"
    return None


def _bad_segment(path: Path, image_id: Any, s: Any, seen: set, categories: dict, need_area: bool) -> str | None:
    """Why a segments_info entry is invalid, or None (the message is only built for a bad entry)."""
    if not isinstance(s, dict):
        return f"image {image_id!r}: segment is not an object: {str(s)[:80]}"
    if not _is_int(s.get("id")):
        return f"image {image_id!r}: segment id must be an integer, got {s.get('id')!r}"
    if not 1 <= s["id"] <= MAX_SEGMENT_ID:
        return f"image {image_id!r}: segment id {s['id']} is outside 1..{MAX_SEGMENT_ID} (0 is VOID)"
    if not _is_int(s.get("category_id")):
        return f"image {image_id!r}: segment {s['id']}: category_id must be an integer, got {s.get('category_id')!r}"
    if s["id"] in seen:
        return f"image {image_id!r}: duplicate segment id {s['id']}"
    if s["category_id"] not in categories:
        return f"image {image_id!r}: segment {s['id']} has unknown category_id {s['category_id']}"
    if "iscrowd" in s and not _is_flag(s["iscrowd"]):
        return f"image {image_id!r}: segment {s['id']}: 'iscrowd' must be 0 or 1, got {s['iscrowd']!r}"
    why = _bad_area(s.get("area"), need_area)
    return f"image {image_id!r}: segment {s['id']}: {why}" if why else None


def _categories(path: Path, listed: Any) -> dict[int, dict]:
    """Categories by id: integer ids, each once, isthing 0 or 1."""
    _require(isinstance(listed, list), path, "missing 'categories' list")
    categories: dict[int, dict] = {}
    for c in listed:
        if not (isinstance(c, dict) and _is_int(c.get("id"))):
            raise LDMSegError(f"{path}: category without an integer id: {str(c)[:80]}")
        _require(c["id"] not in categories, path, f"duplicate category id {c['id']}")
        _require(_is_flag(c.get("isthing")), path, f"category {c['id']}: 'isthing' must be 0 or 1, got "
                 f"{c.get('isthing', 'nothing')!r}")
        categories[c["id"]] = c
    return categories


def load_panoptic_json(path: str | Path, categories: dict[int, dict] | None = None,
                       need_area: bool = False) -> PanopticSet:
    """Parse and validate a COCO-panoptic JSON (GT or predictions).

    Predictions may omit `categories`; pass the GT's. Checks value types, duplicate image ids, duplicate
    segment ids and category ids unknown to the category list; `need_area` (GT for scoring) requires each
    segment's area. A valid file pays only for the tests themselves: messages are built on failure.
    """
    path = Path(path)
    data = read_json(path)
    _require(isinstance(data, dict), path, "top level must be a JSON object")
    _require(isinstance(data.get("annotations"), list), path, "missing 'annotations' list")
    if categories is None:
        categories = _categories(path, data.get("categories"))
    images = {}
    for im in data.get("images", []) or []:
        if isinstance(im, dict) and "id" in im:
            images[im["id"]] = im
    records, seen, names = [], set(), set()
    for ann in data["annotations"]:
        if not (isinstance(ann, dict) and "image_id" in ann and isinstance(ann.get("file_name"), str)
                and isinstance(ann.get("segments_info"), list)):
            raise LDMSegError(f"{path}: annotation needs image_id, file_name (a string) and segments_info "
                              f"(a list): {str(ann)[:80]}")
        image_id = ann["image_id"]
        if not (_is_int(image_id) or isinstance(image_id, str)):
            raise LDMSegError(f"{path}: image_id must be an integer or a string, got {image_id!r}")
        if image_id in seen:
            raise LDMSegError(f"{path}: duplicate image_id {image_id!r}")
        if ann["file_name"] in names:
            raise LDMSegError(f"{path}: image {image_id!r}: file_name {ann['file_name']!r} is used twice")
        seen.add(image_id)
        names.add(ann["file_name"])
        seg_ids: set = set()
        for s in ann["segments_info"]:
            if (type(s) is not dict or type(s.get("id")) is not int or type(s.get("category_id")) is not int
                    or not 0 < s["id"] <= MAX_SEGMENT_ID or s["id"] in seg_ids or s["category_id"] not in categories
                    or s.get("iscrowd", 0) not in (0, 1) or type(s.get("iscrowd", 0)) is float
                    or ("area" in s or need_area) and not (type(s.get("area")) in (int, float)
                                                           and 0 <= s["area"] <= 2**40)):
                why = _bad_segment(path, image_id, s, seg_ids, categories, need_area)
                if why:
                    raise LDMSegError(f"{path}: {why}")
            seg_ids.add(s["id"])
        im = images.get(image_id, {})
        image_file = im.get("file_name")
        for name in (ann["file_name"], image_file):
            if name is not None and not is_plain_name(name):
                raise LDMSegError(f"{path}: image {image_id!r}: file_name {name!r} must be a plain name inside its "
                                  "folder (no '..', no absolute path)")
        records.append(PanopticRecord(image_id, image_file, ann["file_name"], ann["segments_info"],
                                      im.get("width"), im.get("height")))
    return PanopticSet(path, records, categories)


def read_panoptic_ids(folder: str | Path, record: PanopticRecord) -> np.ndarray:
    """A record's panoptic PNG as an id map whose non-zero ids are exactly its JSON segments (the rule of
    panopticapi, which refuses the same mismatches): one line naming the PNG and the first stray id."""
    png = Path(folder) / record.png_file
    ids = read_panoptic_png(png)
    present = set(np.unique(ids).tolist()) - {VOID}
    listed = {s["id"] for s in record.segments}
    if present - listed:
        raise LDMSegError(f"{png}: segment id {min(present - listed)} is in the PNG but not in its JSON entry")
    if listed - present:
        raise LDMSegError(f"{png}: segment id {min(listed - present)} is listed in the JSON but has no pixel in the "
                          "PNG")
    return ids
