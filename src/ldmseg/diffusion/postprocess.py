"""Decoded id logits -> panoptic id maps + segments_info.

Optional first step, id pruning (ours): an id survives only if it is the confident (p >= 0.5)
argmax at >= `min_core` pixels; the logits of the others are dropped, so their pixels go to the
best surviving id. This removes the thin spurious ids that blended latents decode to along
segment boundaries (docs/experiments.md), giving those pixels to a neighbour instead of VOID.
Then the authors' code defaults: pixels whose top softmax probability is below `threshold` become
VOID, segments smaller than `min_area` pixels become VOID, the rest are renumbered 1..K with a
score (mean confidence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

BAND_PIXELS = 1 << 22  # output pixels per band when upsampling to the input size: bounds memory at any image size


def channel_argmax(x: torch.Tensor, dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(max, first index of the max) over `dim`, as torch.max(x, dim) gives. Written by hand because on the CPU
    torch's indexed reductions over a strided channel axis are several times slower than a plain amax: the
    index comes from an amax over reversed channel numbers where x equals its max (128 x 128^2 float32,
    2 cores: torch.argmax 8.9 ms, torch.max 6.2 ms, this 2.9 ms). A NaN max gives the last index."""
    n = x.shape[dim]
    top = x.amax(dim)
    shape = [1] * x.dim()
    shape[dim] = n
    small = torch.uint8 if n < 256 else torch.int16 if n < 2**15 else torch.int32
    rev = torch.arange(n, 0, -1, dtype=small, device=x.device).view(shape)
    hit = (x == top.unsqueeze(dim)).to(small) * rev
    return top, (n - hit.amax(dim).long()).clamp_(max=n - 1)


def scaled_area(area_at_512: float, height: int, width: int) -> int:
    """An area given in pixels at 512^2, as the same fraction of a height x width image."""
    return int(round(area_at_512 * height * width / 512**2))


def unpruned_ids(logits: torch.Tensor, min_core: int, protected: torch.Tensor | None = None) -> torch.Tensor:
    """[B, N] bool: the ids that are the confident (p >= 0.5) argmax at >= `min_core` pixels, those of
    `protected` [B, N] (inpainting: the ids the user gave exist, however small) with any such pixel, and every
    id of a map where none is confident. Two passes over the logits (max, logsumexp), no softmax tensor."""
    lg = logits.float()
    top, ids = channel_argmax(lg, 1)
    return confident_cores(ids, (top - lg.logsumexp(1)).exp(), lg.shape[1], min_core, protected)


def confident_cores(argmax: torch.Tensor, confidence: torch.Tensor, n: int, min_core: int,
                    protected: torch.Tensor | None = None) -> torch.Tensor:
    """`unpruned_ids` from each pixel's argmax id and its probability [B, H, W] (N ids)."""
    b = argmax.shape[0]
    ids = argmax.masked_fill(confidence < 0.5, n)  # bin n collects the unconfident pixels
    offsets = torch.arange(b, device=ids.device).view(b, 1, 1) * (n + 1)
    core = torch.bincount((ids + offsets).flatten(), minlength=b * (n + 1)).view(b, n + 1)[:, :n]
    keep = core >= max(min_core, 1)
    if protected is not None:
        keep |= protected.to(keep.device) & (core > 0)
    return keep | ~keep.any(1, keepdim=True)  # nothing confident at all: prune nothing


def prune_ids(logits: torch.Tensor, min_core: int, protected: torch.Tensor | None = None) -> torch.Tensor:
    """The logits with those of pruned ids (`unpruned_ids` false) set to -inf."""
    keep = unpruned_ids(logits, min_core, protected)
    return logits.float().masked_fill(~keep[:, :, None, None], float("-inf"))


def logits_to_panoptic(logits: torch.Tensor, threshold: float = 0.5, min_area: int = 0, min_core: int = 0,
                       protected: torch.Tensor | None = None) -> list[tuple[np.ndarray, list[dict]]]:
    """[B, N, H, W] logits -> per image (int32 ids, segments_info with id / area / score / bbox);
    `protected` [B, N] bool: ids exempt from pruning."""
    if min_core > 0:
        logits = prune_ids(logits, min_core, protected)
    probs = logits.float().softmax(1)
    conf, ids = channel_argmax(probs, 1)
    ids = torch.where(conf < threshold, torch.zeros_like(ids), ids)
    results = []
    for img_ids, img_conf in zip(ids.cpu().numpy(), conf.cpu().numpy(), strict=True):
        results.append(renumber(img_ids, img_conf, min_area))
    return results


def renumber(ids: np.ndarray, conf: np.ndarray | None, min_area: int) -> tuple[np.ndarray, list[dict]]:
    """Drop segments below min_area, renumber 1..K (largest first), build segments_info."""
    uniq, inverse, counts = np.unique(ids.ravel(), return_inverse=True, return_counts=True)
    keep = (uniq != 0) & (counts >= max(min_area, 1))
    order = np.argsort(-counts * keep, kind="stable")
    new = np.zeros(len(uniq), np.int32)
    kept = [k for k in order if keep[k]]
    new[kept] = np.arange(1, len(kept) + 1)
    out = new[inverse].reshape(ids.shape)
    return out, segment_infos(out, conf)


def segment_infos(ids: np.ndarray, conf: np.ndarray | None = None, band_pixels: int = BAND_PIXELS) -> list[dict]:
    """segments_info (id, area, bbox, and a score = mean confidence when `conf` is given), one per
    non-zero id of the map, in id order. Band by band of rows: memory linear in H x W with a small factor."""
    h, w = ids.shape
    rows = bands(ids.shape, 8, band_pixels)  # 8 channels: band_pixels pixels per band
    uniq = np.unique(np.concatenate([np.unique(ids[a:b]) for a, b in rows] or [np.zeros(0, ids.dtype)]))
    uniq = uniq[uniq != 0]
    n = len(uniq)
    area, score = np.zeros(n, np.int64), np.zeros(n, np.float64)
    x0, y0, x1, y1 = np.full(n, w), np.full(n, h), np.full(n, -1), np.full(n, -1)
    for top, bottom in rows:
        ys, xs = np.nonzero(ids[top:bottom])
        vals = ids[top:bottom][ys, xs]
        lab = np.searchsorted(uniq, vals)
        area += np.bincount(lab, minlength=n)
        if conf is not None:
            score += np.bincount(lab, weights=conf[top:bottom][ys, xs], minlength=n)
        np.minimum.at(x0, lab, xs)
        np.maximum.at(x1, lab, xs)
        np.minimum.at(y0, lab, ys + top)
        np.maximum.at(y1, lab, ys + top)
    segments = []
    for k in range(n):
        info = {"id": int(uniq[k]), "category_id": 1, "iscrowd": 0, "area": int(area[k]),
                "bbox": [int(x0[k]), int(y0[k]), int(x1[k] - x0[k] + 1), int(y1[k] - y0[k] + 1)]}
        if conf is not None:
            info["score"] = float(score[k] / area[k])
        segments.append(info)
    return segments


def majority_categories(pred_ids: np.ndarray, segments: list[dict], gt_ids: np.ndarray,
                        gt_segments: list[dict]) -> None:
    """Give each predicted segment the category of the GT segment it overlaps most (for recon output)."""
    cat_of = {s["id"]: s["category_id"] for s in gt_segments}
    default = gt_segments[0]["category_id"] if gt_segments else 1
    for s in segments:
        under = gt_ids[pred_ids == s["id"]]
        under = under[under != 0]
        if under.size:
            vals, cnt = np.unique(under, return_counts=True)
            s["category_id"] = cat_of.get(int(vals[np.argmax(cnt)]), default)
        else:
            s["category_id"] = default


def survivors_to_size(probs: torch.Tensor, size: tuple[int, int], min_core: int = 0,
                      protected: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Id probabilities [N, r, r] at the processing resolution (`resize_probabilities`) -> ([K + 1, H, W]
    log-probabilities at `size`, the K ids).

    Only what can still win is upsampled: id pruning runs at r x r (`min_core` in px at that size), the
    K ids that are the argmax somewhere there keep their channels, and every other unpruned id is folded
    into one extra channel (their summed probability), so that softmax confidences stay those of all N ids
    (pruned ids dropped). Memory and time then grow with K + 1 (typically 10-30) instead of N = 128 channels
    at full size; at r x r the N channels are read twice (max, and the folded sum as one matrix-vector
    product). At equal sizes this is exactly the full-resolution post-processing of the logits; when
    upsampling, an id with no pixel of its own at r x r can no longer appear from the interpolation between
    two others (a fragment).
    """
    p = probs.float()
    n = p.shape[0]
    conf, arg = channel_argmax(p)
    unpruned = (confident_cores(arg[None], conf[None], n, min_core,
                                protected[None] if protected is not None else None)[0]
                if min_core > 0 else torch.ones(n, dtype=torch.bool, device=p.device))
    moved = ~unpruned[arg]  # pixels whose argmax was pruned take their best unpruned id
    if moved.any():
        kept = unpruned.nonzero()[:, 0]
        arg = torch.where(moved, kept[channel_argmax(p.index_select(0, kept))[1]], arg)
    keep = torch.zeros(n, dtype=torch.bool, device=p.device)
    keep[arg.unique()] = True
    if protected is not None:
        keep |= protected.to(keep.device) & unpruned
    ids = keep.nonzero()[:, 0]
    others = (unpruned & ~keep).float()  # unpruned ids that win nowhere: their mass shares the extra channel
    rest = torch.einsum("n,nhw->hw", others, p)[None]
    stack = torch.cat([p.index_select(0, ids), rest]).clamp_min_(torch.finfo(p.dtype).tiny).log_()
    if tuple(stack.shape[-2:]) != tuple(size):
        stack = F.interpolate(stack[None], size=size, mode="bilinear", align_corners=False)[0]
    return stack, ids


def panoptic_from_survivors(stack: torch.Tensor, ids: torch.Tensor, threshold: float = 0.5, min_area: int = 0,
                            with_model_ids: bool = False) -> tuple[np.ndarray, list[dict], np.ndarray]:
    """`survivors_to_size` output -> (int32 ids, segments_info, confidence map, or with `with_model_ids` the map of
    model ids before renumbering): as logits_to_panoptic on the full logits, except that ids without a pixel of
    their own at the processing resolution cannot win."""
    stack = stack.float()
    arg = channel_argmax(stack[:-1])[1]  # the extra channel only shares the probability mass
    conf = (stack.gather(0, arg[None])[0] - stack.logsumexp(0)).exp()
    model_ids = torch.where(conf < threshold, torch.zeros_like(arg), ids[arg]).cpu().numpy()
    conf_np = conf.cpu().numpy()
    out, segments = renumber(model_ids, conf_np, min_area)
    return out, segments, (model_ids if with_model_ids else conf_np)


def semantic_from_logits(logits: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """[B, N, H, W] semantic-AE logits -> [B, H, W] class ids: argmax over the class channels 1..num_classes
    (default N - 1). Channel 0 is VOID / ignore, never a prediction."""
    top = logits.shape[1] - 1 if num_classes is None else min(num_classes, logits.shape[1] - 1)
    return channel_argmax(logits[:, 1:top + 1], 1)[1] + 1


def bands(size: tuple[int, int], channels: int, band_pixels: int = BAND_PIXELS):
    """Row ranges (y0, y1) covering an image of `size` so that `channels` x band x width stays near band_pixels."""
    h, w = size
    rows = max(1, band_pixels // max(1, w * max(1, channels // 8)))
    return [(y0, min(h, y0 + rows)) for y0 in range(0, h, rows)]


def resample_rows(stack: torch.Tensor, size: tuple[int, int], y0: int, y1: int) -> torch.Tensor:
    """Rows y0..y1 of `stack` [C, r, r] bilinearly resized to `size`, without the rest: the same sampling
    positions as F.interpolate(bilinear, align_corners=False) with its edge clamping (grid_sample, border)."""
    h, w = size
    gy = (torch.arange(y0, y1, dtype=torch.float32, device=stack.device) + 0.5) / h * 2 - 1
    gx = (torch.arange(w, dtype=torch.float32, device=stack.device) + 0.5) / w * 2 - 1
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1)[None]
    return F.grid_sample(stack[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=False)[0]


def vote_counts(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[K, r, r] label maps of K samples -> ([C, r, r] how many samples give each present label, the C labels in
    ascending order): with `labels_at_size` the per-pixel majority, ties to the smallest label."""
    present = labels.unique()
    return (labels[:, None] == present[None, :, None, None]).sum(0).float(), present


def labels_at_size(stack: torch.Tensor, labels: torch.Tensor, size: tuple[int, int],
                   band_pixels: int = BAND_PIXELS) -> np.ndarray:
    """int32 map of labels[argmax over the channels of `stack` [C, r, r] bilinearly resized to `size`], band by
    band (memory linear in H x W whatever C)."""
    if tuple(size) == tuple(stack.shape[-2:]):
        return labels[channel_argmax(stack)[1]].cpu().numpy().astype(np.int32)
    out = np.empty(size, np.int32)
    for top, bottom in bands(size, stack.shape[0], band_pixels):
        out[top:bottom] = labels[channel_argmax(resample_rows(stack, size, top, bottom))[1]].cpu().numpy()
    return out


@dataclass
class Decision:
    """One sample's post-processing at the processing resolution: its panoptic map and segments there, the
    model id of each segment, and the surviving logits to paint the input size with."""

    ids: np.ndarray
    segments: list[dict]
    model_of: dict[int, int]  # segment id -> model id (one to one)
    stack: torch.Tensor  # [K + 1, r, r]: the K surviving ids' logits + the rest's logsumexp
    survivors: torch.Tensor  # [K] model ids


def decide(probs: torch.Tensor, threshold: float, min_area: int, min_core: int,
           protected: torch.Tensor | None = None) -> Decision:
    """Pruning, confidence threshold and minimum area decided at the processing resolution from the id
    probabilities [N, r, r] (`min_area` and `min_core` in pixels at that size)."""
    stack, survivors = survivors_to_size(probs, tuple(probs.shape[-2:]), min_core, protected)
    ids, segments, model = panoptic_from_survivors(stack, survivors, threshold, min_area, with_model_ids=True)
    sel = ids != 0
    n = int(model.max(initial=0)) + 1
    pairs = np.unique(ids[sel].astype(np.int64) * n + model[sel])
    return Decision(ids, segments, {int(a): int(b) for a, b in zip(pairs // n, pairs % n, strict=True)}, stack,
                    survivors)


def paint(decision: Decision, keep: set[int], size: tuple[int, int], threshold: float,
          band_pixels: int = BAND_PIXELS) -> tuple[np.ndarray, list[dict]]:
    """The decided segments `keep` (segment ids at the processing resolution) at the input size: the survivors'
    logits upsampled band by band (memory linear in H x W whatever the number of ids), argmax, confidence
    threshold; pixels of ids not kept are VOID. Segments are renumbered largest first; score = mean
    confidence at the input size."""
    kept_models = torch.tensor(sorted(decision.model_of[s] for s in keep), dtype=torch.long)
    n = int(decision.survivors.max()) + 1 if len(decision.survivors) else 1
    h, w = size
    model_map = np.zeros(size, np.int32)
    area, score = np.zeros(n, np.int64), np.zeros(n, np.float64)
    x0, y0s, x1, y1s = np.full(n, w), np.full(n, h), np.full(n, -1), np.full(n, -1)
    same = tuple(size) == tuple(decision.stack.shape[-2:])
    for top, bottom in bands(size, decision.stack.shape[0], band_pixels):
        lg = decision.stack[:, top:bottom].float() if same else resample_rows(decision.stack, size, top, bottom)
        arg = channel_argmax(lg[:-1])[1]
        conf = (lg.gather(0, arg[None])[0] - lg.logsumexp(0)).exp()
        model = torch.where(conf < threshold, torch.zeros_like(arg), decision.survivors[arg])
        model = torch.where(torch.isin(model, kept_models), model, torch.zeros_like(model)).numpy()
        model_map[top:bottom] = model
        ys, xs = np.nonzero(model)
        labels = model[ys, xs]
        area += np.bincount(labels, minlength=n)
        score += np.bincount(labels, weights=conf.numpy()[ys, xs], minlength=n)
        np.minimum.at(x0, labels, xs)
        np.maximum.at(x1, labels, xs)
        np.minimum.at(y0s, labels, ys + top)
        np.maximum.at(y1s, labels, ys + top)
    present = [m for m in range(1, n) if area[m] > 0]
    order = sorted(present, key=lambda m: -area[m])  # stable: ties keep the model-id order, as renumber
    lut = np.zeros(n, np.int32)
    lut[order] = np.arange(1, len(order) + 1)
    segments = [{"id": int(lut[m]), "category_id": 1, "iscrowd": 0, "area": int(area[m]),
                 "bbox": [int(x0[m]), int(y0s[m]), int(x1[m] - x0[m] + 1), int(y1s[m] - y0s[m] + 1)],
                 "score": float(score[m] / area[m])} for m in order]
    return lut[model_map], segments


def log_probabilities_at(probs: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`output_logits`: one sample's id probabilities [N, r, r] as log-probabilities resized to the input size."""
    resized = F.interpolate(probs[None].float(), size=size, mode="bilinear", align_corners=False)[0]
    return resized.clamp_min_(torch.finfo(resized.dtype).tiny).log_().cpu()
