"""Stage-1 losses: CE over N id logits + per-segment BCE/Dice on each segment's own channel,
evaluated at PointRend-style importance-sampled points (Kirillov et al.; Mask2Former).

No Hungarian matching is needed: a segment's id *is* its channel. The losses see logits only at
points, through a `PointLogits` function, so a model may compute them at the points alone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def sample_at(values: torch.Tensor, coords: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """values [B, C, H, W], coords [B, P, 2] as (x, y) in [0, 1] -> [B, C, P].

    Border padding: a point within half a pixel of the edge takes the edge value, as the bilinear
    upsampling at inference does (zero padding would blend logits with 0 there).
    """
    grid = coords.unsqueeze(2) * 2 - 1
    return F.grid_sample(values, grid, mode=mode, padding_mode="border", align_corners=False).squeeze(-1)


def sample_ids_at(ids: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Nearest-pixel ids [B, P] at coords [B, P, 2] from full-resolution ids [B, H, W]."""
    h, w = ids.shape[-2:]
    x = (coords[..., 0] * w).long().clamp(0, w - 1)
    y = (coords[..., 1] * h).long().clamp(0, h - 1)
    return torch.gather(ids.flatten(1), 1, y * w + x)


def top2_margin_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """[B, N, P] -> [B, P]: minus the gap between the two largest logits (high = uncertain)."""
    top2 = logits.topk(2, dim=1).values
    return -(top2[:, 0] - top2[:, 1])


PointLogits = Callable[[torch.Tensor], torch.Tensor]  # coords [B, P, 2] in [0, 1] -> logits [B, N, P]


def dense_point_logits(logits: torch.Tensor) -> PointLogits:
    """Point logits from a dense logit map [B, N, h, w], bilinearly sampled."""
    return lambda coords: sample_at(logits, coords)


def importance_points(uncertainty_fn, logits_at: PointLogits, batch: int, device: torch.device, num_points: int,
                      oversample: float, importance_ratio: float, generator: torch.Generator | None = None
                      ) -> torch.Tensor:
    """Draw oversample*k random points, keep the importance_ratio*k most uncertain plus random ones.

    `uncertainty_fn` maps logits at points [B, C, P] to [B, P] scores.
    """
    cand = candidate_points(batch, device, num_points, oversample, generator)
    with torch.no_grad():
        score = uncertainty_fn(logits_at(cand).float())
    return pick_points(cand, score, num_points, importance_ratio, generator)


def candidate_points(batch: int, device: torch.device, num_points: int, oversample: float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    return torch.rand(batch, max(1, int(num_points * oversample)), 2, device=device, generator=generator)


def pick_points(cand: torch.Tensor, score: torch.Tensor, num_points: int, importance_ratio: float,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """The importance_ratio*k candidates of highest score, then uniformly random points up to k."""
    n_imp = int(importance_ratio * num_points)
    idx = score.topk(n_imp, dim=1).indices
    picked = torch.gather(cand, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    rand = torch.rand(cand.shape[0], num_points - n_imp, 2, device=cand.device, generator=generator)
    return torch.cat([picked, rand], 1)


def present_ids(ids: torch.Tensor, num_ids: int) -> torch.Tensor:
    """[B, N] bool: the non-VOID ids of each image (one scatter, no per-image loop)."""
    present = torch.zeros(ids.shape[0], num_ids, dtype=torch.bool, device=ids.device)
    present.scatter_(1, ids.flatten(1).long(), True)
    present[:, 0] = False
    return present


def segment_uncertainty(present: torch.Tensor):
    """Uncertainty for the mask loss: max over the image's segments of -|own-channel logit|
    (images without segments score their channel 0 instead)."""
    fallback = ~present.any(1, keepdim=True) & (torch.arange(present.shape[1], device=present.device) == 0)
    channels = (present | fallback).unsqueeze(-1)

    def fn(sampled: torch.Tensor) -> torch.Tensor:
        return torch.where(channels, -sampled.abs(), -torch.inf).amax(1)
    return fn


def id_cross_entropy(logits_at: torch.Tensor, target_at: torch.Tensor) -> torch.Tensor:
    """CE over the N id logits at points; VOID (0) targets are ignored."""
    if (target_at != 0).sum() == 0:
        return logits_at.sum() * 0
    return F.cross_entropy(logits_at, target_at, ignore_index=0)


def segment_bce_dice(logits_at: torch.Tensor, target_at: torch.Tensor, present: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over GT segments of BCE and Dice on each segment's own channel (VOID is negative).
    All segments of the batch at once: [S, P] rows picked by the [B, N] `present` mask."""
    n = max(int(present.sum()), 1)
    own = logits_at[present]  # [S, P]
    image, seg = present.nonzero(as_tuple=True)
    tgt = (target_at[image] == seg.unsqueeze(1)).float()
    bce = F.binary_cross_entropy_with_logits(own, tgt, reduction="none").mean(1).sum()
    prob = own.sigmoid()
    dice = (1 - (2 * (prob * tgt).sum(1) + 1) / (prob.sum(1) + tgt.sum(1) + 1)).sum()
    return bce / n, dice / n


def binary_logits(log_probs: torch.Tensor) -> torch.Tensor:
    """log p -> log p - log(1 - p): the per-id sigmoid logits of normalised log-probabilities (sigmoid gives p
    back), so the mask loss reads a mixture head's probabilities as the pixel head's sigmoid would."""
    log_probs = log_probs.clamp(max=-1e-6)
    return log_probs - torch.log(-torch.expm1(log_probs))


def scaled_num_points(points_at_512: int, height: int, width: int) -> int:
    """112^2 points at 512^2 keeps the same density at other sizes."""
    return max(16, round(points_at_512 * height * width / 512**2))


def mask_autoencoder_loss(logits_at: PointLogits, ids: torch.Tensor, num_points: int, oversample: float = 3.0,
                          importance_ratio: float = 0.75, ce_weight: float = 1.0, bce_weight: float = 1.0,
                          dice_weight: float = 1.0, log_probs: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
    """Total stage-1 loss from the decoder's point logits and full-resolution target ids [B, H, W].

    Both losses pick their points from one shared candidate set, and their points are headed in one call:
    two evaluations of the (per-point) head per step instead of four. log_probs: the point values are
    normalised log-probabilities (the slot head), turned into binary logits for the mask loss.
    """
    b, dev = ids.shape[0], ids.device
    cand = candidate_points(b, dev, num_points, oversample)
    with torch.no_grad():
        cand_logits = logits_at(cand).float()
    present = present_ids(ids, cand_logits.shape[1])
    ce_pts = pick_points(cand, top2_margin_uncertainty(cand_logits), num_points, importance_ratio)
    mask_scores = segment_uncertainty(present)(binary_logits(cand_logits) if log_probs else cand_logits)
    mask_pts = pick_points(cand, mask_scores, num_points, importance_ratio)
    both = logits_at(torch.cat([ce_pts, mask_pts], 1)).float()
    ce_logits, mask_logits = both[..., :num_points], both[..., num_points:]
    if log_probs:
        mask_logits = binary_logits(mask_logits)
    ce = id_cross_entropy(ce_logits, sample_ids_at(ids, ce_pts))
    bce, dice = segment_bce_dice(mask_logits, sample_ids_at(ids, mask_pts), present)
    total = ce_weight * ce + bce_weight * bce + dice_weight * dice
    return total, {"ce": ce.item(), "bce": bce.item(), "dice": dice.item()}
