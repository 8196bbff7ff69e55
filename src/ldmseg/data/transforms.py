"""Per-sample transforms on numpy arrays: resize, pad, flip, VOID rules, random id reassignment."""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image

from ldmseg.data.formats import VOID


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (antialiased) resize of an HxWx3 uint8 image to (height, width)."""
    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an integer map ([..., H, W]) to (height, width)."""
    if labels.shape[-2:] == tuple(size):
        return labels
    h, w = labels.shape[-2:]
    ys = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    return labels[..., ys[:, None], xs[None, :]]


def resize_float(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map (depth)."""
    if values.shape[:2] == tuple(size):
        return values
    return np.asarray(Image.fromarray(values.astype(np.float32), mode="F").resize((size[1], size[0]),
                                                                                    Image.BILINEAR))


def fit_size(shape: tuple[int, int], size: int, mode: str) -> tuple[int, int]:
    """Target (h, w): 'squash' to size x size (the paper), or 'pad' keeping aspect (long side = size)."""
    if mode == "squash":
        return size, size
    if mode != "pad":
        raise ValueError(f"unknown resize mode {mode!r}")
    h, w = shape
    scale = size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def pad_to(array: np.ndarray, size: int, value: float | int) -> np.ndarray:
    """Pad bottom/right to size x size."""
    h, w = array.shape[:2]
    pad = [(0, size - h), (0, size - w)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad, constant_values=value)


def hflip(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(np.ascontiguousarray(a[:, ::-1]) for a in arrays)


def random_crop_box(shape: tuple[int, int], min_scale: float, rng: np.random.Generator) -> tuple[slice, slice]:
    """A random window with the frame's aspect whose sides are a fraction in [min_scale, 1] of the frame's:
    scale augmentation (objects seen larger than the frame shows them)."""
    h, w = shape
    scale = rng.uniform(min_scale, 1.0)
    ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return slice(y, y + ch), slice(x, x + cw)


def jitter_colors(image: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Random saturation, contrast and brightness of an HxWx3 uint8 image, each scaled by a factor drawn from
    [1 - amount, 1 + amount]: photometric augmentation (other cameras, light, weather)."""
    saturation, contrast, brightness = rng.uniform(1 - amount, 1 + amount, 3)
    pixels = image.astype(np.float32)
    gray = pixels.mean(axis=2, keepdims=True)
    pixels = gray + (pixels - gray) * saturation
    mean = pixels.mean()
    pixels = (mean + (pixels - mean) * contrast) * brightness
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def void_segments(ids: np.ndarray, segments: list[dict], min_area: int = 0, crowd: bool = True) -> np.ndarray:
    """Set crowd segments (training rule) and segments smaller than `min_area` px to VOID."""
    drop = [s["id"] for s in segments if (crowd and s.get("iscrowd", 0)) or s.get("area", min_area) < min_area]
    if not drop:
        return ids
    return np.where(np.isin(ids, drop), VOID, ids)


_warned_overflow = False


def keep_largest(ids: np.ndarray, max_segments: int) -> np.ndarray:
    """Keep the `max_segments` largest segments; the rest become VOID (warns once per process)."""
    global _warned_overflow
    uniq, counts = np.unique(ids[ids != VOID], return_counts=True)
    if len(uniq) <= max_segments:
        return ids
    if not _warned_overflow:
        warnings.warn(f"an image has {len(uniq)} segments, more than the {max_segments} the bit encoding "
                      "holds; the smallest become VOID (warned once)", stacklevel=2)
        _warned_overflow = True
    order = np.argsort(-counts, kind="stable")
    return np.where(np.isin(ids, uniq[order[max_segments:]]), VOID, ids)


def reassign_ids(ids: np.ndarray, num_ids: int, rng: np.random.Generator) -> np.ndarray:
    """Map every non-VOID id to a distinct random id in 1..num_ids-1 (permutation invariance).

    Call `keep_largest(ids, num_ids - 1)` first if the map may hold more segments.
    """
    uniq, inverse = np.unique(ids, return_inverse=True)
    nonvoid = uniq != VOID
    if nonvoid.sum() > num_ids - 1:
        raise ValueError(f"{int(nonvoid.sum())} segments do not fit in ids 1..{num_ids - 1}")
    new = np.zeros(len(uniq), np.int64)
    new[nonvoid] = rng.choice(np.arange(1, num_ids), size=int(nonvoid.sum()), replace=False)
    return new[inverse.reshape(ids.shape)]


def semantic_from_panoptic(ids: np.ndarray, segments: list[dict]) -> np.ndarray:
    """Category id per pixel from a panoptic id map and its segments_info (0 where no segment: VOID)."""
    seg_ids = np.array([s["id"] for s in segments], np.int64)
    cats = np.array([s["category_id"] for s in segments], np.int64)
    order = np.argsort(seg_ids)
    seg_ids, cats = seg_ids[order], cats[order]
    flat = ids.astype(np.int64).ravel()
    pos = np.clip(np.searchsorted(seg_ids, flat), 0, max(len(seg_ids) - 1, 0))
    found = (seg_ids[pos] == flat) if len(seg_ids) else np.zeros(flat.shape, bool)
    return np.where(found, cats[pos] if len(cats) else 0, 0).reshape(ids.shape)
