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
    n_over = max(1, int(num_points * oversample))
    cand = torch.rand(batch, n_over, 2, device=device, generator=generator)
    with torch.no_grad():
        score = uncertainty_fn(logits_at(cand).float())
    n_imp = int(importance_ratio * num_points)
    idx = score.topk(n_imp, dim=1).indices
    picked = torch.gather(cand, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    rand = torch.rand(batch, num_points - n_imp, 2, device=device, generator=generator)
    return torch.cat([picked, rand], 1)


def present_ids(ids: torch.Tensor) -> list[torch.Tensor]:
    """Non-VOID ids of each image."""
    return [torch.unique(i[i != 0]) for i in ids]


def segment_uncertainty(segment_ids: list[torch.Tensor]):
    """Uncertainty for the mask loss: max over the image's segments of -|own-channel logit|."""
    def fn(sampled: torch.Tensor) -> torch.Tensor:
        out = []
        for k, seg in enumerate(segment_ids):
            own = sampled[k, seg] if len(seg) else sampled[k, :1]
            out.append((-own.abs()).amax(0))
        return torch.stack(out)
    return fn


def id_cross_entropy(logits_at: torch.Tensor, target_at: torch.Tensor) -> torch.Tensor:
    """CE over the N id logits at points; VOID (0) targets are ignored."""
    if (target_at != 0).sum() == 0:
        return logits_at.sum() * 0
    return F.cross_entropy(logits_at, target_at, ignore_index=0)


def segment_bce_dice(logits_at: torch.Tensor, target_at: torch.Tensor, segment_ids: list[torch.Tensor]
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over GT segments of BCE and Dice on each segment's own channel (VOID is negative)."""
    bce, dice, n = logits_at.sum() * 0, logits_at.sum() * 0, 0
    for k, seg in enumerate(segment_ids):
        if len(seg) == 0:
            continue
        own = logits_at[k, seg]  # [S, P]
        tgt = (target_at[k].unsqueeze(0) == seg.unsqueeze(1)).float()
        bce = bce + F.binary_cross_entropy_with_logits(own, tgt, reduction="none").mean(1).sum()
        prob = own.sigmoid()
        dice = dice + (1 - (2 * (prob * tgt).sum(1) + 1) / (prob.sum(1) + tgt.sum(1) + 1)).sum()
        n += len(seg)
    n = max(n, 1)
    return bce / n, dice / n


def scaled_num_points(points_at_512: int, height: int, width: int) -> int:
    """112^2 points at 512^2 keeps the same density at other sizes."""
    return max(16, round(points_at_512 * height * width / 512**2))


def mask_autoencoder_loss(logits_at: PointLogits, ids: torch.Tensor, num_points: int, oversample: float = 3.0,
                          importance_ratio: float = 0.75, ce_weight: float = 1.0, bce_weight: float = 1.0,
                          dice_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Total stage-1 loss from the decoder's point logits and full-resolution target ids [B, H, W]."""
    segs = present_ids(ids)
    b, dev = ids.shape[0], ids.device
    ce_pts = importance_points(top2_margin_uncertainty, logits_at, b, dev, num_points, oversample, importance_ratio)
    mask_pts = importance_points(segment_uncertainty(segs), logits_at, b, dev, num_points, oversample,
                                 importance_ratio)
    ce = id_cross_entropy(logits_at(ce_pts).float(), sample_ids_at(ids, ce_pts))
    bce, dice = segment_bce_dice(logits_at(mask_pts).float(), sample_ids_at(ids, mask_pts), segs)
    total = ce_weight * ce + bce_weight * bce + dice_weight * dice
    return total, {"ce": ce.item(), "bce": bce.item(), "dice": dice.item()}
