"""Id maps <-> analog bit planes (Chen et al., "Analog Bits"), the mask AE's input format.

Plane k holds bit k of the id (least-significant first). VOID pixels get 0.5 in every
plane, so after the 2x-1 shift bits are +-1 and VOID is exactly 0.
"""

from __future__ import annotations

import torch


def ids_to_bits(ids: torch.Tensor, num_bits: int) -> torch.Tensor:
    """[B, H, W] integer ids (0 = VOID, < 2**num_bits) -> [B, num_bits, H, W] floats in {-1, 0, 1}."""
    if ids.numel() and int(ids.max()) >= 2**num_bits:
        raise ValueError(f"id {int(ids.max())} does not fit in {num_bits} bits")
    shifts = torch.arange(num_bits, device=ids.device).view(1, -1, 1, 1)
    bits = ((ids.long().unsqueeze(1) >> shifts) & 1).float()
    bits = torch.where(ids.unsqueeze(1) == 0, torch.full_like(bits, 0.5), bits)
    return bits * 2 - 1


def bits_to_ids(bits: torch.Tensor) -> torch.Tensor:
    """Inverse of `ids_to_bits`: sign of each plane; pixels whose planes are all ~0 are VOID."""
    num_bits = bits.shape[1]
    weights = (2 ** torch.arange(num_bits, device=bits.device)).view(1, -1, 1, 1)
    ids = ((bits > 0).long() * weights).sum(1)
    return torch.where(bits.abs().amax(1) < 0.5, torch.zeros_like(ids), ids)
