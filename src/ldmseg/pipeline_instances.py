"""Instance maps from decoded id probabilities, as the pipeline serves them: every decision at the processing
resolution (id pruning, confidence threshold, minimum area, an ensemble's choice and its unconfirmed segments), then
only the chosen sample's kept ids painted at the input size, band by band (memory linear in H x W). With
inpainting hints, the given ids are matched at both sizes and written back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ldmseg.data.transforms import resize_labels
from ldmseg.diffusion.ensemble import ensemble
from ldmseg.diffusion.inpainting import given_id_lut, given_ids_mask, match_given_ids
from ldmseg.diffusion.postprocess import decide, log_probabilities_at, paint, scaled_area, segment_infos
from ldmseg.pipeline_call import PipelineCall, repeat_each


@dataclass(frozen=True)
class InstanceRules:
    """The model's post-processing constants (its config): the minimum area and id-pruning core at 512^2, and the
    share of an ensemble's samples that must find a segment again."""

    min_area_at_512: float
    min_core_at_512: float
    ensemble_min_support: float

    @classmethod
    def of(cls, config) -> InstanceRules:
        return cls(float(config.min_area_at_512), float(config.min_core_at_512), float(config.ensemble_min_support))


def area_at_res(rules: InstanceRules, min_area: int | None, size: tuple[int, int], res: int) -> int:
    """The minimum segment area in pixels at res x res: a caller's min_area (input pixels) as the same share."""
    if min_area is None:
        return scaled_area(rules.min_area_at_512, res, res)
    return round(min_area * res * res / (size[0] * size[1]))


def completions(probs: torch.Tensor, call: PipelineCall, model_ids: list[np.ndarray], rules: InstanceRules
                ) -> tuple:
    """Inpainting: each sample decided at the processing resolution (given ids exempt from pruning) and matched
    to the hints resized there, the ensemble's choice made there; only the chosen sample is painted at the
    input size, where the given ids are matched again and written back (memory linear in H x W)."""
    k, res, thr = call.serving.ensemble_size, probs.shape[-1], call.serving.confidence_threshold
    keep_known, core = call.serving.keep_known, scaled_area(rules.min_core_at_512, res, res)
    panoptic, infos, kept, agreements = [], [], [], []
    for n, (size, (partial, valid)) in enumerate(zip(call.sizes, call.hints, strict=True)):
        start = n * k
        small = resize_labels(partial, (res, res)), resize_labels(valid, (res, res))
        area = area_at_res(rules, call.serving.min_area, size, res)
        decisions, luts, samples = [], [], []
        for i in range(start, start + k):
            decision = decide(probs[i], thr, area, core, given_ids_mask(model_ids[i], probs.shape[1])[0])
            lut = given_id_lut(decision.ids, *small)
            mapped, _ = match_given_ids(decision.ids, *small, keep_known=keep_known, lut=lut)
            decisions.append(decision)
            luts.append(lut)
            samples.append((mapped, segment_infos(mapped)))
        given = set(np.unique(partial[valid]).tolist())
        index, (_, segs) = ensemble(samples, rules.ensemble_min_support, renumber=False, protected=given)
        survivors = {s["id"] for s in segs}
        keep = {seg for seg, out_id in luts[index].items() if out_id in survivors}
        painted, painted_segs = paint(decisions[index], keep, size, thr)
        ids, agreement = match_given_ids(painted, partial, valid, keep_known=keep_known)
        score = np.zeros(len(painted_segs) + 1, np.float32)
        for s in painted_segs:
            score[s["id"]] = s["score"]
        conf = score[painted]
        conf[(painted == 0) & valid & (partial != 0)] = 1.0  # written back from the user's hint
        panoptic.append(ids)
        infos.append(segment_infos(ids, conf))
        agreements.append(agreement)
        if call.output_logits:
            kept.append(log_probabilities_at(probs[start + index], size))
    return panoptic, infos, kept or None, agreements


def instances_at_resolution(probs: torch.Tensor, call: PipelineCall, rules: InstanceRules) -> tuple:
    """Segmentation without given ids: every decision at the processing resolution (pruning, threshold, minimum
    area, the ensemble's choice and its unconfirmed segments), then only the chosen sample's surviving ids are
    painted at the input size, band by band (memory linear in H x W)."""
    k, res, thr = call.serving.ensemble_size, probs.shape[-1], call.serving.confidence_threshold
    core = scaled_area(rules.min_core_at_512, res, res)
    sizes = repeat_each(call.sizes, k)
    decisions = [decide(lg, thr, area_at_res(rules, call.serving.min_area, size, res), core)
                 for lg, size in zip(probs, sizes, strict=True)]
    panoptic, infos, kept = [], [], []
    for start in range(0, len(decisions), k):
        group = decisions[start:start + k]
        index, (_, segs) = ensemble([(d.ids, d.segments) for d in group], rules.ensemble_min_support,
                                    renumber=False)
        ids, segments = paint(group[index], {s["id"] for s in segs}, sizes[start], thr)
        panoptic.append(ids)
        infos.append(segments)
        if call.output_logits:
            kept.append(log_probabilities_at(probs[start + index], sizes[start]))
    return panoptic, infos, kept or None
