"""Mask inpainting around the sampler (paper Algorithm 3): what is known, in latent space, and
how the completed map keeps the ids it was given.

- `known_latents`: the given ids are mapped to random distinct model ids (as in training), unknown
  pixels are VOID (all bits 0), and the mask AE encodes the result; times s, like the training latents.
- `latent_mask`: which latent cells count as known. A cell covers f x f pixels; 'nearest' (the pixel
  nearest-neighbour downsampling picks, the cell's top-left one; the default), 'any' (at least one
  pixel known) or 'all' (every pixel): within 3 PQ of each other in bench/inpaint.py, 'nearest'
  best or within 0.3 PQ of the best in its last three runs.
- `given_ids_mask`: the model ids a hint uses, exempt from the post-processing's id pruning.
- `match_given_ids`: every predicted segment that overlaps given pixels takes the given id it overlaps
  most, the others get fresh ids; known pixels then keep their given id.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ldmseg.data.bits import ids_to_bits
from ldmseg.data.transforms import resize_labels
from ldmseg.errors import LDMSegError

MASK_RULES = ("nearest", "any", "all")
DEFAULT_MASK_RULE = "nearest"


def latent_mask(valid: torch.Tensor, size: tuple[int, int], rule: str = DEFAULT_MASK_RULE) -> torch.Tensor:
    """[B, H, W] bool known pixels -> [B, 1, h, w] float mask of known latent cells."""
    v = valid[:, None].float()
    if rule == "nearest":
        return F.interpolate(v, size=size, mode="nearest")
    if rule == "any":
        return F.adaptive_max_pool2d(v, size)
    if rule == "all":
        return -F.adaptive_max_pool2d(-v, size)
    raise ValueError(f"unknown mask rule {rule!r}; choose from {MASK_RULES}")


def to_model_ids(partial: np.ndarray, valid: np.ndarray, num_ids: int, rng: np.random.Generator) -> np.ndarray:
    """Given ids (any integers; 0 = VOID) inside `valid` -> distinct random ids in 1..num_ids-1, else 0."""
    ids = np.where(valid, partial, 0).astype(np.int64)
    given = np.unique(ids[ids != 0])
    if len(given) > num_ids - 1:
        raise LDMSegError(f"the partial mask has {len(given)} segments; this model encodes at most {num_ids - 1}")
    lut = dict(zip(given.tolist(), rng.choice(np.arange(1, num_ids), size=len(given), replace=False).tolist(),
                   strict=True))
    out = np.zeros_like(ids)
    for g, m in lut.items():
        out[ids == g] = m
    return out


def given_ids_mask(model_ids: np.ndarray, num_ids: int) -> torch.Tensor:
    """[1, num_ids] bool: which model ids a hint map uses (exempt from id pruning: given segments exist)."""
    mask = torch.zeros(1, num_ids, dtype=torch.bool)
    mask[0, torch.from_numpy(np.unique(model_ids[model_ids != 0]))] = True
    return mask


@torch.no_grad()
def known_latents(ae: torch.nn.Module, model_ids: list[np.ndarray], size: int, scale: float,
                  device: torch.device) -> torch.Tensor:
    """Model-id maps (any size) -> [B, D, size/f, size/f] latents times the scale factor."""
    batch = np.stack([resize_labels(ids, (size, size)) for ids in model_ids])
    bits = ids_to_bits(torch.from_numpy(batch).to(device), ae.config.num_bits)
    return ae.encode(bits) * scale


def given_id_lut(pred: np.ndarray, partial: np.ndarray, valid: np.ndarray) -> dict[int, int]:
    """Predicted segment id -> the given id it overlaps most, or a fresh id (above the given ones) if none."""
    known = valid & (partial != 0)
    fresh = int(partial[known].max()) + 1 if known.any() else 1
    lut = {}
    for seg in np.unique(pred[pred != 0]).tolist():
        under = partial[(pred == seg) & known]
        if under.size:
            vals, counts = np.unique(under, return_counts=True)
            lut[seg] = int(vals[np.argmax(counts)])
        else:
            lut[seg], fresh = fresh, fresh + 1
    return lut


def match_given_ids(pred: np.ndarray, partial: np.ndarray, valid: np.ndarray, keep_known: bool = True,
                    lut: dict[int, int] | None = None) -> tuple[np.ndarray, float]:
    """Give predicted segments the given ids they overlap most, fresh ids (above the given ones) to the rest
    (`lut`: given_id_lut's answer when the caller has it already).

    Returns the id map and the agreement: the fraction of known labelled pixels whose predicted
    segment took their id, measured before `keep_known` writes the given ids back.
    """
    known = valid & (partial != 0)
    lut = given_id_lut(pred, partial, valid) if lut is None else lut
    table = np.zeros(int(pred.max(initial=0)) + 1, np.int64)
    table[list(lut)] = list(lut.values())
    out = table[pred]
    agreement = float((out[known] == partial[known]).mean()) if known.any() else 1.0
    if keep_known:
        out[known] = partial[known]
    return out, agreement


def checked_hints(partial_mask, valid_mask, sizes: list[tuple[int, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image (partial ids int64, valid bool), checked against the image sizes."""
    partials = partial_mask if isinstance(partial_mask, list) else [partial_mask]
    valids = valid_mask if isinstance(valid_mask, list) else [valid_mask] * len(partials)
    if len(partials) != len(sizes) or len(valids) != len(sizes):
        raise LDMSegError(f"got {len(partials)} partial masks / {len(valids)} valid masks for {len(sizes)} images")
    out = []
    for i, (p, v, size) in enumerate(zip(partials, valids, sizes, strict=True)):
        p = np.asarray(p)
        if p.ndim != 2 or p.shape != size:
            raise LDMSegError(f"partial mask {i}: shape {p.shape} does not match its image ({size[0]}x{size[1]})")
        v = (p != 0) if v is None else np.asarray(v).astype(bool)
        if v.shape != size:
            raise LDMSegError(f"valid mask {i}: shape {v.shape} does not match its image ({size[0]}x{size[1]})")
        if not v.any():
            raise LDMSegError(f"partial mask {i}: no pixel is given, so there is nothing to complete (segment the "
                              "image without partial_mask instead)")
        out.append((p.astype(np.int64), v))
    return out
