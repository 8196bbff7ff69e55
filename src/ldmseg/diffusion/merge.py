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

import numpy as np

from ldmseg.diffusion.postprocess import segment_infos
from ldmseg.errors import LDMSegError


def merge_panoptic(instance_ids: np.ndarray, semantic: np.ndarray, categories: list[dict], min_area: int = 0,
                   instance_scores: dict[int, float] | None = None) -> tuple[np.ndarray, list[dict]]:
    """(HxW instance ids, 0 = VOID) + (HxW class ids, 0 = ignore) -> (int32 panoptic ids, segments_info)."""
    if instance_ids.shape != semantic.shape:
        raise LDMSegError(f"instance map {instance_ids.shape} and semantic map {semantic.shape} differ in size")
    sem = semantic.astype(np.int64).ravel()
    top = max([c["id"] for c in categories] + [int(sem.max(initial=0))]) + 1
    is_thing, is_stuff = np.zeros(top, bool), np.zeros(top, bool)
    for c in categories:
        (is_thing if c.get("isthing") else is_stuff)[c["id"]] = True
    uniq, inv = np.unique(instance_ids.ravel(), return_inverse=True)
    votes = np.bincount(inv * top + sem, minlength=len(uniq) * top).reshape(len(uniq), top)
    votes[:, 0] = 0
    majority = votes.argmax(1)
    area = np.bincount(inv, minlength=len(uniq))
    kept = (uniq != 0) & (votes.max(1) > 0) & is_thing[majority] & (area >= max(min_area, 1))
    kept_order = [k for k in np.argsort(-area, kind="stable") if kept[k]]

    out = np.zeros(sem.shape, np.int32)
    lut = np.zeros(len(uniq), np.int32)
    lut[kept_order] = np.arange(1, len(kept_order) + 1)
    out[:] = lut[inv]
    category = {int(lut[k]): int(majority[k]) for k in kept_order}
    scores = {int(lut[k]): (instance_scores or {}).get(int(uniq[k])) for k in kept_order}

    free_stuff = (out == 0) & is_stuff[sem]
    classes, counts = np.unique(sem[free_stuff], return_counts=True)
    next_id = len(kept_order) + 1
    for k in np.argsort(-counts, kind="stable"):
        if counts[k] < max(min_area, 1):
            continue
        out[free_stuff & (sem == classes[k])] = next_id
        category[next_id] = int(classes[k])
        next_id += 1

    out = out.reshape(instance_ids.shape)
    segments = segment_infos(out)
    for s in segments:
        s["category_id"] = category[s["id"]]
        s["isthing"] = int(is_thing[s["category_id"]])
        if scores.get(s["id"]) is not None:
            s["score"] = scores[s["id"]]
    return out, segments
