"""Ensembling: the agreement between sampled maps and the pipeline's choice of one sample per image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_diffusion import tiny_pipeline

from ldmseg.diffusion.ensemble import (
    agreement,
    confirmations,
    consensus_index,
    drop_segments,
    ensemble,
    one_way_pq,
    unconfirmed_ids,
)
from ldmseg.diffusion.postprocess import segment_infos
from ldmseg.errors import LDMSegError
from ldmseg.pipeline import LDMSegPipeline


def sample(ids: np.ndarray, score: float = 0.9) -> tuple[np.ndarray, list[dict]]:
    segs = segment_infos(ids)
    for s in segs:
        s["score"] = score
    return ids, segs


def scene() -> np.ndarray:
    ids = np.zeros((16, 16), np.int32)
    ids[:, :8], ids[:, 8:] = 1, 2
    ids[2:6, 2:6] = 3
    return ids


def test_agreement_ignores_id_names_and_sees_splits() -> None:
    a = scene()
    renamed = np.choose(a, [0, 7, 5, 9]).astype(np.int32)
    split = a.copy()
    split[8:, 8:] = 4  # segment 2 cut in half: neither half matches it
    assert agreement(sample(a), sample(a)) == 1.0
    assert agreement(sample(a), sample(renamed)) == 1.0
    assert agreement(sample(a), sample(split)) == pytest.approx(agreement(sample(split), sample(a)))
    assert agreement(sample(a), sample(split)) < 0.8
    empty = np.zeros_like(a)
    assert agreement(sample(empty), sample(empty)) == 1.0 and agreement(sample(a), sample(empty)) == 0.0


def test_pq_between_two_samples_is_symmetric_so_agreement_scores_one_direction() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = (rng.integers(0, rng.integers(2, 9), (24, 24)).astype(np.int32) for _ in range(2))
        rows = rng.integers(0, 24)
        b[:rows] = a[:rows]  # partly the same map (VOID included), so some segments match and some do not
        there, back = one_way_pq(sample(a), sample(b)), one_way_pq(sample(b), sample(a))
        assert there == pytest.approx(back, abs=1e-12)
        assert agreement(sample(a), sample(b)) == there


def test_consensus_keeps_the_sample_the_others_agree_with() -> None:
    a = scene()
    outlier = a.copy()
    outlier[8:, 8:] = 4
    other = np.choose(a, [0, 2, 1, 3]).astype(np.int32)
    assert consensus_index([sample(outlier), sample(a), sample(other)]) == 1
    # agreement first (the outlier's higher score does not count), then score between the two that agree
    assert consensus_index([sample(outlier, 0.99), sample(a, 0.5), sample(other, 0.9)]) == 2
    assert consensus_index([sample(a, 0.6), sample(outlier, 0.8)]) == 1  # two samples: the more confident one
    assert consensus_index([sample(a)]) == 0


def test_segments_the_other_samples_do_not_find_are_dropped() -> None:
    a = scene()
    renamed = np.choose(a, [0, 7, 5, 9]).astype(np.int32)
    without = np.where(a == 3, 1, a)  # segment 3 missed: its pixels went to segment 1
    samples = [sample(a), sample(renamed), sample(without)]
    assert confirmations(samples, 0) == {1: 2, 2: 2, 3: 1}
    assert unconfirmed_ids(samples, 0, 0.75) == {3} and unconfirmed_ids(samples, 0, 0.5) == set()
    ids, segs = drop_segments(sample(np.where(a == 3, 0, a) + 2 * (a == 3)), {1}, renumber=True)  # drop id 1
    assert set(np.unique(ids).tolist()) == {0, 1} and [s["id"] for s in segs] == [1] and segs[0]["score"] == 0.9
    assert (ids[a == 1] == 0).all() and (ids[a == 2] == 1).all() and (ids[a == 3] == 1).all()
    index, (kept, kept_segs) = ensemble([sample(a), sample(a), sample(without), sample(without)], 0.75)
    assert index == 0 and 3 not in kept and (kept[a == 3] == 0).all() and len(kept_segs) == 2
    _, (kept, _) = ensemble([sample(a), sample(a), sample(without), sample(without)], 0.75, protected={3})
    assert np.array_equal(kept, a)  # a given id (inpainting) stays


def test_pipeline_returns_the_consensus_of_the_same_samples() -> None:
    tiny = tiny_pipeline()  # without the post-processing's thresholds, its samples differ from one another
    pipe = LDMSegPipeline(**tiny.components, scale_factor=0.5, default_num_inference_steps=3,
                          default_processing_resolution=32, confidence_threshold=0.0, min_area_at_512=0,
                          min_core_at_512=0)
    rng = np.random.default_rng(0)
    # at the processing resolution the ensemble decides on exactly what is painted (at other sizes it decides at
    # that resolution, so on pixel-noise segments of a random model the two can legitimately differ)
    images = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(2)]
    k = 3
    # the same noise, drawn for the images repeated K times side by side: the samples the ensemble chooses from
    each = pipe([im for im in images for _ in range(k)], generator=torch.Generator().manual_seed(4),
                output_logits=True)
    out = pipe(images, generator=torch.Generator().manual_seed(4), ensemble_size=k, output_logits=True)
    assert len(out.panoptic) == len(out.logits) == 2
    assert any(not np.array_equal(each.panoptic[0], each.panoptic[j]) for j in range(1, k))  # something to choose
    for i in range(2):
        candidates = list(zip(each.panoptic[i * k:(i + 1) * k], each.segments_info[i * k:(i + 1) * k], strict=True))
        index, (ids, segs) = ensemble(candidates, pipe.config.ensemble_min_support)
        assert np.array_equal(out.panoptic[i], ids) and out.segments_info[i] == segs
        assert torch.equal(out.logits[i], each.logits[i * k + index])
    with pytest.raises(LDMSegError, match="ensemble_size"):
        pipe(images, ensemble_size=0)
