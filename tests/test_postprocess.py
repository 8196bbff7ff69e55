"""Post-processing of decoded id distributions: id pruning (and tuning its floor), deciding at the processing
resolution, painting at the output size."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_diffusion import tiny_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))  # the tuning script's helpers


def test_scoring_several_id_prunings_reproduces_the_pipeline() -> None:
    from tune_min_core import sampled_pq_by_min_core

    pipe = tiny_pipeline()
    pipe.register_to_config(min_core_at_512=2048.0)
    with torch.no_grad():  # random weights are never confident: sharpen the decoder's logits
        pipe.mask_autoencoder.decoder[-1].weight.mul_(100)
    images = [torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i)) * 2 - 1 for i in range(3)]
    out = pipe(images, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert all(len(segs) > 0 for segs in out.segments_info)
    items = [{"image": im, "ids": torch.from_numpy(ids.astype(np.int64))} for im, ids in zip(images, out.panoptic,
                                                                                            strict=True)]
    pq = sampled_pq_by_min_core(pipe, items, {"own": 2048.0, "none": 0.0}, steps=2, batch_size=3, seed=0)
    assert pq["own"] == pytest.approx(100.0)  # the same samples, post-processed as the pipeline does
    assert pq["none"] < 100.0  # without pruning, fragments the pipeline removed come back


def test_tuning_the_id_pruning_as_served_agrees_with_the_single_sample_proxy_at_ensemble_one() -> None:
    """With an ensemble of one, a full pipeline run per candidate sees the same samples as the proxy that scores
    one sample under every candidate (random tiny models agree on no consensus, so an ensemble gives VOID)."""
    from tune_min_core import sampled_pq_by_min_core, served_pq_by_min_core

    pipe = tiny_pipeline()
    pipe.register_to_config(min_core_at_512=1024.0, default_ensemble_size=1, default_num_inference_steps=2)
    with torch.no_grad():
        pipe.mask_autoencoder.decoder[-1].weight.mul_(100)
    images = [torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i)) * 2 - 1 for i in range(3)]
    out = pipe(images, generator=torch.Generator().manual_seed(0), task="instances")
    items = [{"image": im, "ids": torch.from_numpy(ids.astype(np.int64))} for im, ids in zip(images, out.panoptic,
                                                                                            strict=True)]
    cores = {"none": 0.0, "own": 1024.0, "large": 8192.0}
    served = served_pq_by_min_core(pipe, items, cores, batch_size=3, seed=0)
    proxy = sampled_pq_by_min_core(pipe, items, cores, steps=2, batch_size=3, seed=0)
    assert served == pytest.approx(proxy)
    assert served["own"] == pytest.approx(100.0)  # the pipeline's own output, scored against itself
    assert len(set(round(v, 6) for v in served.values())) > 1  # the candidates differ
    assert pipe.config.min_core_at_512 == 1024.0  # the pipeline's own setting is restored


def test_post_processing_at_the_processing_resolution() -> None:
    """Deciding at r x r and upsampling only the ids that can still win: exact at equal sizes, and at a
    larger size the same as post-processing all N upsampled channels except at rare boundary pixels."""
    import torch.nn.functional as F

    from ldmseg.diffusion.postprocess import logits_to_panoptic, panoptic_from_survivors, survivors_to_size

    torch.manual_seed(0)
    blocks = torch.zeros(1, 32, 8, 8)
    blocks[0, 3, :4], blocks[0, 7, 4:, :4], blocks[0, 9, 4:, 4:] = 6.0, 6.0, 6.0
    logits = F.interpolate(blocks, size=(32, 32), mode="bilinear") + torch.randn(1, 32, 32, 32) * 0.5
    (ref, ref_segs), = logits_to_panoptic(logits, 0.5, 4, 20)
    stack, ids = survivors_to_size(logits[0].softmax(0), (32, 32), 20)
    assert stack.shape[0] == len(ids) + 1 < 8  # a few survivors + the rest, not 32 channels
    same, segs, _ = panoptic_from_survivors(stack, ids, 0.5, 4)
    assert np.array_equal(same, ref)
    assert [{**x, "score": round(x["score"], 6)} for x in segs] == [{**x, "score": round(x["score"], 6)}
                                                                   for x in ref_segs]
    big = F.interpolate(logits, size=(80, 96), mode="bilinear", align_corners=False)
    (full, _), = logits_to_panoptic(big, 0.5, 25, 125)
    up, _, _ = panoptic_from_survivors(*survivors_to_size(logits[0].softmax(0), (80, 96), 20), 0.5, 25)
    names = {int(u): int(np.bincount(full[up == u]).argmax()) for u in np.unique(up)}  # ids are renumbered
    assert (np.vectorize(names.get)(up) == full).mean() > 0.99


def test_decide_at_resolution_then_paint_in_bands() -> None:
    """decide + paint: exact at equal sizes; at a larger size the same in one band or in many (memory bounded), and
    the same as interpolating the surviving channels whole; ids outside `keep` are VOID."""
    import torch.nn.functional as F

    from ldmseg.diffusion.postprocess import decide, logits_to_panoptic, paint, panoptic_from_survivors

    torch.manual_seed(1)
    blocks = torch.zeros(1, 32, 8, 8)
    blocks[0, 3, :4], blocks[0, 7, 4:, :4], blocks[0, 9, 4:, 4:] = 6.0, 6.0, 6.0
    logits = F.interpolate(blocks, size=(32, 32), mode="bilinear") + torch.randn(1, 32, 32, 32) * 0.5
    (ref, ref_segs), = logits_to_panoptic(logits, 0.5, 4, 20)
    d = decide(logits[0].softmax(0), 0.5, 4, 20)
    assert np.array_equal(d.ids, ref) and len(d.model_of) == len(ref_segs)
    same, segs = paint(d, set(d.model_of), (32, 32), 0.5)
    assert np.array_equal(same, ref)
    assert [{**x, "score": round(x["score"], 5)} for x in segs] == [{**x, "score": round(x["score"], 5)}
                                                                   for x in ref_segs]
    one, one_segs = paint(d, set(d.model_of), (90, 70), 0.5)
    many, many_segs = paint(d, set(d.model_of), (90, 70), 0.5, band_pixels=300)
    assert np.array_equal(one, many) and [x["area"] for x in one_segs] == [x["area"] for x in many_segs]
    whole = F.interpolate(d.stack[None], size=(90, 70), mode="bilinear", align_corners=False)[0]
    ids, _, _ = panoptic_from_survivors(whole, d.survivors, 0.5, 0)
    assert (ids == one).mean() > 0.999
    largest = min(d.model_of)  # segment 1 is the largest
    dropped, dropped_segs = paint(d, set(d.model_of) - {largest}, (90, 70), 0.5)
    assert (dropped[one == 1] == 0).all() and len(dropped_segs) == len(one_segs) - 1


def test_channel_argmax_is_torch_max_with_first_index_on_ties() -> None:
    from ldmseg.diffusion.postprocess import channel_argmax

    g = torch.Generator().manual_seed(0)
    for shape, dim in (((128, 20, 9), 0), ((2, 300, 5, 4), 1), ((6, 7), 1)):  # uint8 and int16 channel numbers
        x = torch.randint(0, 4, shape, generator=g).float()  # many ties
        top, idx = channel_argmax(x, dim)
        first = (x == x.amax(dim, keepdim=True)).float().argmax(dim)  # first maximal channel
        assert torch.equal(top, x.amax(dim)) and torch.equal(idx, first)
    x = torch.zeros(3, 2)
    x[1, 0] = float("nan")
    assert channel_argmax(x)[1].tolist() == [2, 0]  # a NaN max still gives an index in range


def test_painting_at_a_larger_size_when_every_unpruned_id_wins_somewhere() -> None:
    """When no unpruned id is left over (the folded channel is empty), upsampling must not turn it into NaN:
    scores stay finite and the confidence threshold still applies (the shipped code gave NaN scores and
    skipped the threshold at every input size other than the processing resolution)."""
    import torch.nn.functional as F

    from ldmseg.diffusion.postprocess import decide, paint

    blocks = torch.zeros(1, 16, 4, 4)
    blocks[0, 3, :2], blocks[0, 7, 2:, :2], blocks[0, 9, 2:, 2:] = 6.0, 6.0, 6.0
    probs = F.interpolate(blocks, size=(32, 32), mode="bilinear", align_corners=False)[0].softmax(0)
    d = decide(probs, 0.5, 4, 20)
    assert sorted(d.survivors.tolist()) == [3, 7, 9]
    ids, segs = paint(d, set(d.model_of), (90, 70), 0.5)
    assert len(segs) == 3 and all(0.5 <= s["score"] <= 1 for s in segs)
    kept = F.interpolate(probs[[3, 7, 9]][None], size=(90, 70), mode="bilinear", align_corners=False)[0]
    conf = (kept / kept.sum(0)).amax(0).numpy()  # pruned ids' mass dropped, as at the processing resolution
    assert ((ids == 0) == (conf < 0.5)).all()
