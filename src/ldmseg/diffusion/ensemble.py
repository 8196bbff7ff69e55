"""Ensembling: keep the one of several sampled panoptic maps of an image that the others agree with most.

Sampling is stochastic and every sample names its segments with arbitrary ids (REFERENCE §4), so
samples cannot be averaged pixel by pixel. Segment matching is what PQ already does, so the kept
sample is the medoid under PQ: the one with the highest mean class-agnostic PQ against the other
samples (minimum Bayes risk for the metric we are judged by). A fragment that one sample invents is
rarely repeated by the others; segments that all samples find are.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    """Symmetric class-agnostic PQ between two maps of the same image."""
    return 0.5 * (one_way_pq(a, b) + one_way_pq(b, a))


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
