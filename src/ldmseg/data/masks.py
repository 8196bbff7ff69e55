"""Masks that hide part of a panoptic map (True = known, False = hidden), for the inpainting
benchmark and for inpainting-aware training. Every generator hits its promised drop rate.

- `block_mask`: the paper's benchmark (Fig. 9): the image is tiled by B x B blocks and exactly
  round(d x number of blocks) of them, chosen at random, are hidden.
- `beit_mask`: BEiT-style blockwise masking: random rectangles of blocks (aspect 0.3..3.3) until
  the hidden share reaches d; the last rectangle is trimmed so the count is exact.
- `stroke_mask`: what a person gives: thick random polylines and scribbles are the *known* pixels,
  drawn until they cover 1 - d of the image (within a fraction of one stroke's area).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from ldmseg.errors import LDMSegError

MASK_TYPES = ("blocks", "beit", "strokes")


def _blocks_to_pixels(hidden_blocks: np.ndarray, block: int, size: tuple[int, int]) -> np.ndarray:
    full = np.kron(hidden_blocks, np.ones((block, block), bool))
    return ~full[: size[0], : size[1]]


def block_mask(size: tuple[int, int], block: int, drop_rate: float, rng: np.random.Generator) -> np.ndarray:
    """Hide exactly round(drop_rate x #blocks) random B x B blocks; returns the known-pixel mask."""
    gh, gw = math.ceil(size[0] / block), math.ceil(size[1] / block)
    hidden = np.zeros(gh * gw, bool)
    hidden[rng.choice(gh * gw, size=int(round(drop_rate * gh * gw)), replace=False)] = True
    return _blocks_to_pixels(hidden.reshape(gh, gw), block, size)


def beit_mask(size: tuple[int, int], block: int, drop_rate: float, rng: np.random.Generator,
              min_blocks: int = 4) -> np.ndarray:
    """BEiT-style: hide random rectangles of blocks until exactly round(d x #blocks) are hidden."""
    gh, gw = math.ceil(size[0] / block), math.ceil(size[1] / block)
    target = int(round(drop_rate * gh * gw))
    hidden = np.zeros((gh, gw), bool)
    while hidden.sum() < target:
        left = target - int(hidden.sum())
        area = rng.uniform(min(min_blocks, left), max(min(min_blocks, left), left * 0.4 + 1))
        aspect = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
        h = min(gh, max(1, int(round(math.sqrt(area * aspect)))))
        w = min(gw, max(1, int(round(math.sqrt(area / aspect)))))
        y, x = rng.integers(0, gh - h + 1), rng.integers(0, gw - w + 1)
        new = np.zeros_like(hidden)
        new[y:y + h, x:x + w] = True
        new &= ~hidden
        cells = np.flatnonzero(new)
        if len(cells) > left:  # trim the last rectangle to hit the target exactly
            new.flat[rng.choice(cells, size=len(cells) - left, replace=False)] = False
        hidden |= new
    return _blocks_to_pixels(hidden, block, size)


def stroke_mask(size: tuple[int, int], drop_rate: float, rng: np.random.Generator,
                width: tuple[float, float] = (0.02, 0.05)) -> np.ndarray:
    """Known pixels = random thick strokes covering ~(1 - drop_rate) of the image."""
    h, w = size
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    target = (1.0 - drop_rate) * h * w
    scale = min(h, w)
    covered = 0
    for _ in range(10_000):
        if covered >= target:
            break
        thickness = max(1, int(round(rng.uniform(*width) * scale)))
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        angle = rng.uniform(0, 2 * math.pi)
        points = [(x, y)]
        for _ in range(int(rng.integers(2, 7))):  # a polyline that bends a little at every vertex
            angle += rng.normal(0, 0.8)
            step = rng.uniform(0.05, 0.25) * scale
            x, y = x + step * math.cos(angle), y + step * math.sin(angle)
            points.append((x, y))
        draw.line(points, fill=255, width=thickness, joint="curve")
        covered = int((np.asarray(canvas) > 0).sum())
    return np.asarray(canvas) > 0


def make_mask(kind: str, size: tuple[int, int], drop_rate: float, block: int, rng: np.random.Generator
              ) -> np.ndarray:
    """One of MASK_TYPES by name (block size is ignored for strokes). A block larger than the mask is refused: it
    would hide all or nothing, and tiling with it costs block^2 memory."""
    if not 0.0 <= drop_rate <= 1.0:
        raise ValueError(f"drop rate must be in [0, 1], got {drop_rate}")
    if kind != "strokes" and not 1 <= block <= max(size):
        raise LDMSegError(f"--block-size {block}: expected 1..{max(size)} px, at most the {size[1]}x{size[0]} mask "
                          "(the processing resolution)")
    if kind == "blocks":
        return block_mask(size, block, drop_rate, rng)
    if kind == "beit":
        return beit_mask(size, block, drop_rate, rng)
    if kind == "strokes":
        return stroke_mask(size, drop_rate, rng)
    raise ValueError(f"unknown mask type {kind!r}; choose from {MASK_TYPES}")
