"""Ensembling: of several sampled panoptic maps of an image, keep the one the others agree with most,
minus the segments the others do not confirm.

Sampling is stochastic and every sample names its segments with arbitrary ids (docs/design.md, "Sampling"), so
samples cannot be averaged pixel by pixel. Segment matching is what PQ already does, so the kept
sample is the medoid under PQ: the one with the highest mean class-agnostic PQ against the other
samples (minimum Bayes risk for the metric we are judged by). Then each of its segments must be
found again (IoU > 0.5) by a share of the other samples: a fragment that one sample invents is rarely
repeated by the others, segments that are really there are. Unconfirmed segments become VOID.
"""

from __future__ import annotations

from collections.abc import Sequence, Set

import numpy as np

from ldmseg.metrics.panoptic import AGNOSTIC_CATEGORY, class_agnostic, pq_image

Sample = tuple[np.ndarray, list[dict]]  # (id map, segments_info)
_CAT_INDEX = {AGNOSTIC_CATEGORY["id"]: 0}


def void_as_segment(sample: Sample) -> Sample:
    """The map with its VOID pixels made one more segment. Between two samples VOID is a prediction
    like any other: under the evaluator's rules an all-VOID sample would agree with everything."""
    ids, segs = sample
    void = ids == 0
    if not void.any():
        return ids, class_agnostic(segs)
    new_id = int(ids.max()) + 1
    return np.where(void, new_id, ids), [*class_agnostic(segs), {"id": new_id, "category_id": AGNOSTIC_CATEGORY["id"],
                                                                  "iscrowd": 0, "area": int(void.sum())}]


def one_way_pq(reference: Sample, other: Sample) -> float:
    """Class-agnostic PQ of `other` scored against `reference`, VOID a segment in both."""
    (ref_ids, ref_segs), (other_ids, other_segs) = void_as_segment(reference), void_as_segment(other)
    stat = pq_image(ref_ids, ref_segs, other_ids, other_segs, _CAT_INDEX)
    return float(stat.iou[0] / (stat.tp[0] + 0.5 * (stat.fp[0] + stat.fn[0])))


def agreement(a: Sample, b: Sample) -> float:
    """Class-agnostic PQ between two maps of the same image. Symmetric, so one evaluator pass: with VOID a
    segment in both maps nothing is ignored, IoU does not depend on which map is the reference, and
    swapping them only swaps false positives and false negatives, whose sum PQ uses."""
    return one_way_pq(a, b)


def mean_score(sample: Sample) -> float:
    """Mean confidence of a sample's segments (0 without segments or scores)."""
    scores = [seg.get("score", 0.0) for seg in sample[1]]
    return float(np.mean(scores)) if scores else 0.0


def consensus_index(samples: Sequence[Sample]) -> int:
    """Index of the sample with the highest mean agreement with the others; ties (always, for two
    samples) go to the higher mean segment score, then to the first."""
    k = len(samples)
    agree = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            agree[i, j] = agree[j, i] = agreement(samples[i], samples[j])
    total = np.round(agree.sum(1), 9)  # equal sums must compare equal despite float summation order
    return max(range(k), key=lambda i: (total[i], mean_score(samples[i]), -i))


def confirmations(samples: Sequence[Sample], index: int) -> dict[int, int]:
    """For each segment id of sample `index`: how many of the other samples have a segment with IoU > 0.5
    with it (at most one can: the match is unique, as in PQ)."""
    ref = samples[index][0].astype(np.int64).ravel()
    ref_ids, ref_area = np.unique(ref, return_counts=True)
    count = {int(i): 0 for i in ref_ids if i != 0}
    for k, (other, _) in enumerate(samples):
        if k == index:
            continue
        other = other.astype(np.int64).ravel()
        other_ids, other_area = np.unique(other, return_counts=True)
        pairs, inter = np.unique(ref * (int(other.max()) + 1) + other, return_counts=True)
        r, o = np.divmod(pairs, int(other.max()) + 1)
        union = ref_area[np.searchsorted(ref_ids, r)] + other_area[np.searchsorted(other_ids, o)] - inter
        for rid in r[(r != 0) & (o != 0) & (inter / union > 0.5)]:
            count[int(rid)] += 1
    return count


def unconfirmed_ids(samples: Sequence[Sample], index: int, min_support: float) -> set[int]:
    """Ids of sample `index` found again in fewer than ceil(min_support x (K - 1)) of the other samples."""
    need = int(np.ceil(min_support * (len(samples) - 1) - 1e-9))
    return {i for i, n in confirmations(samples, index).items() if n < need}


def drop_segments(sample: Sample, ids: Set[int], renumber: bool) -> Sample:
    """The sample with segments `ids` made VOID; `renumber` closes the gaps in 1..K (size order kept, since
    post-processing numbers segments largest first)."""
    pred, segs = sample
    kept = [s for s in segs if s["id"] not in ids]
    pred = np.where(np.isin(pred, list(ids)), 0, pred) if ids else pred
    if not renumber or not ids:
        return pred, kept
    lut = np.zeros(int(pred.max()) + 1, pred.dtype)
    old = sorted(s["id"] for s in kept)
    lut[old] = np.arange(1, len(old) + 1)
    return lut[pred], [{**s, "id": int(lut[s["id"]])} for s in kept]


def ensemble(samples: Sequence[Sample], min_support: float, renumber: bool = True,
             protected: Set[int] = frozenset()) -> tuple[int, Sample]:
    """(index of the consensus sample, that sample without its unconfirmed segments); `protected` ids
    are never dropped (inpainting: the ids the user gave)."""
    index = consensus_index(samples)
    if min_support <= 0 or len(samples) < 2:
        return index, samples[index]
    return index, drop_segments(samples[index], unconfirmed_ids(samples, index, min_support) - protected,
                                renumber)
