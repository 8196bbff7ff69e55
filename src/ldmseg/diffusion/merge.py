"""Class-aware panoptic maps from the two class-agnostic predictions of one model (paper §4.2, Table 2):
instance ids (task `instances`) merged with a semantic map (task `semantic`).

The rule, in order:
1. each predicted instance takes the majority semantic class over its pixels (ignore / VOID pixels do not vote;
   an instance over ignore pixels only is dropped to VOID);
2. an instance whose class is a thing class stays one segment of that class, and claims all its pixels;
   one smaller than `min_area` goes to VOID;
3. every stuff class becomes one segment: its semantic pixels that no kept thing instance claims
   (the pixels of instances whose majority class is stuff are released to it);
4. what is left goes to VOID: thing-class semantic pixels no instance covers, ignore pixels, and stuff
   segments smaller than `min_area`.
Segments are numbered things first (largest first), then stuff (largest first); segments_info carries
the category id, isthing, area, bbox and, for things, the instance's score.
"""

from __future__ import annotations

import itertools

import numpy as np

from ldmseg.diffusion.postprocess import BAND_PIXELS, bands, segment_infos
from ldmseg.errors import LDMSegError


def merge_panoptic(instance_ids: np.ndarray, semantic: np.ndarray, categories: list[dict], min_area: int = 0,
                   instance_scores: dict[int, float] | None = None, band_pixels: int = BAND_PIXELS,
                   given: frozenset[int] = frozenset()) -> tuple[np.ndarray, list[dict]]:
    """(HxW instance ids, 0 = VOID) + (HxW class ids, 0 = ignore) -> (int32 panoptic ids, segments_info).
    Counted band by band of rows: memory linear in H x W with a small factor (100 MP inputs).

    `given` (inpainting): instance ids the user gave. Each stays one segment under its own number, whatever its
    class (a given stuff segment is not pooled into its class's segment), and the other segments take fresh
    numbers that skip them."""
    if instance_ids.shape != semantic.shape:
        raise LDMSegError(f"instance map {instance_ids.shape} and semantic map {semantic.shape} differ in size")
    rows = bands(instance_ids.shape, 8, band_pixels)
    uniq = np.unique(np.concatenate([np.unique(instance_ids[y0:y1]) for y0, y1 in rows] or [np.zeros(1, np.int64)]))
    top = max([c["id"] for c in categories] + [int(semantic.max(initial=0))]) + 1
    is_thing, is_stuff = np.zeros(top, bool), np.zeros(top, bool)
    for c in categories:
        (is_thing if c.get("isthing") else is_stuff)[c["id"]] = True

    def band(y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:  # (instance index into uniq, class), flat
        return np.searchsorted(uniq, instance_ids[y0:y1].ravel()), semantic[y0:y1].ravel().astype(np.int64)

    votes = np.zeros((len(uniq), top), np.int64)
    for y0, y1 in rows:
        inv, sem = band(y0, y1)
        votes += np.bincount(inv * top + sem, minlength=len(uniq) * top).reshape(len(uniq), top)
    area = votes.sum(1)
    votes[:, 0] = 0
    majority = votes.argmax(1)
    is_given = np.isin(uniq, list(given)) & (uniq != 0) & (votes.max(1) > 0)
    kept = is_given | ((uniq != 0) & (votes.max(1) > 0) & is_thing[majority] & (area >= max(min_area, 1)))
    kept_order = [k for k in np.argsort(-area, kind="stable") if kept[k]]
    fresh = (i for i in itertools.count(1) if i not in given)
    lut = np.zeros(len(uniq), np.int32)
    for k in kept_order:
        lut[k] = uniq[k] if is_given[k] else next(fresh)
    category = {int(lut[k]): int(majority[k]) for k in kept_order}
    scores = {int(lut[k]): (instance_scores or {}).get(int(uniq[k])) for k in kept_order}

    free_counts = np.zeros(top, np.int64)  # stuff pixels no kept thing instance claims, per class
    for y0, y1 in rows:
        inv, sem = band(y0, y1)
        free_counts += np.bincount(sem[(lut[inv] == 0) & is_stuff[sem]], minlength=top)
    stuff_id = np.zeros(top, np.int32)
    for k in np.argsort(-free_counts, kind="stable"):
        if free_counts[k] == 0 or free_counts[k] < max(min_area, 1):
            continue
        stuff_id[k] = next(fresh)
        category[int(stuff_id[k])] = int(k)

    out = np.empty(instance_ids.shape, np.int32)
    for y0, y1 in rows:
        inv, sem = band(y0, y1)
        ids = lut[inv]
        free = (ids == 0) & is_stuff[sem]
        ids[free] = stuff_id[sem[free]]
        out[y0:y1] = ids.reshape(y1 - y0, -1)
    segments = segment_infos(out, band_pixels=band_pixels)
    for s in segments:
        s["category_id"] = category[s["id"]]
        s["isthing"] = int(is_thing[s["category_id"]])
        if scores.get(s["id"]) is not None:
            s["score"] = scores[s["id"]]
    return out, segments
