"""Real object silhouettes pasted into synthetic layouts: a second way (beside training on the photos' own masks)
to teach the mask AE real shapes.

A COCO instances set holds a few thousand object outlines. Pasted over synthetic scenes' masks at log-uniform
scales (small objects as common as large ones), flipped and placed at random, largest first so the small ones stay
visible, they give an unbounded stream of masks with real outlines: denser and richer in small objects than the
photos themselves, which is where the AE loses most on real masks (docs/benchmarks.md, "Mask AEs on real masks").
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ldmseg.data import transforms
from ldmseg.data.datasets import _key
from ldmseg.data.synthetic import SceneConfig, generate_scene
from ldmseg.errors import LDMSegError

PREFIX = "silhouettes:"  # --data source: 'silhouettes:PATH/instances.json'


class SilhouetteBank:
    """Object outlines (bool arrays cropped to each object's box), kept in order of their longer side."""

    def __init__(self, shapes: Sequence[np.ndarray]):
        self.shapes = sorted(shapes, key=lambda s: max(s.shape))
        self.sides = np.array([max(s.shape) for s in self.shapes])

    def pick(self, extent: float, rng: np.random.Generator) -> np.ndarray:
        """A random outline that reaches `extent` px enlarged at most twice (a tiny outline blown up shows its
        pixel staircase), or one of the largest 5 % where none does."""
        first = min(int(np.searchsorted(self.sides, extent / 2)), len(self.shapes) - max(1, len(self.shapes) // 20))
        return self.shapes[int(rng.integers(first, len(self.shapes)))]

    @classmethod
    def from_instances(cls, path: str | Path, min_area: int = 16) -> SilhouetteBank:
        """Every non-crowd object of at least `min_area` px; annotations are checked as the data path checks them."""
        from pycocotools import mask as mask_utils

        from ldmseg.data.coco_instances import annotation_rle, load_instances

        instances = load_instances(path)
        shapes = []
        for image in instances.images:
            for ann in image.annotations:
                if ann.get("iscrowd", 0):
                    continue
                rle = annotation_rle(ann, image.height, image.width)
                if mask_utils.area(rle) < min_area:  # counted from the runs: small ones are never decoded
                    continue
                mask = mask_utils.decode(rle).view(bool)
                rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
                shapes.append(mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].copy())
        if not shapes:
            raise LDMSegError(f"{path}: no object of at least {min_area} px to take a silhouette from")
        return cls(shapes)


@lru_cache(maxsize=4)
def cached_bank(path: str) -> SilhouetteBank:
    """One bank per instances file and process (a run mixing scene sizes reads the outlines once)."""
    return SilhouetteBank.from_instances(path)


def scaled_shape(shape: np.ndarray, extent: float) -> np.ndarray:
    """The outline resized so that its longer side is `extent` px: area-averaged when shrinking (no aliasing when
    a large outline becomes a small one), bilinear when enlarging (no staircase), then thresholded at one half."""
    factor = extent / max(shape.shape)
    size = (max(1, round(shape.shape[1] * factor)), max(1, round(shape.shape[0] * factor)))
    resized = Image.fromarray(shape.astype(np.uint8) * 255).resize(size, Image.BOX if factor < 1 else Image.BILINEAR)
    return np.asarray(resized) >= 128


def paste_silhouettes(ids: np.ndarray, bank: SilhouetteBank, count: int, rng: np.random.Generator,
                      scale: tuple[float, float] = (0.02, 0.5)) -> np.ndarray:
    """`ids` with `count` outlines pasted, each a new id: longer side log-uniform in `scale` x the map's longer
    side, half of them mirrored, centred anywhere (so some leave the map), largest first."""
    h, w = ids.shape
    out = ids.astype(np.int64)
    next_id = int(out.max()) + 1
    extents = np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]), count)) * max(h, w)
    for k in np.argsort(-extents, kind="stable"):
        shape = bank.pick(float(extents[k]), rng)
        shape = scaled_shape(shape[:, ::-1] if rng.random() < 0.5 else shape, float(extents[k]))
        sh, sw = shape.shape
        y0, x0 = int(rng.integers(-(sh // 2), h - sh // 2)), int(rng.integers(-(sw // 2), w - sw // 2))
        ys, xs = slice(max(y0, 0), min(y0 + sh, h)), slice(max(x0, 0), min(x0 + sw, w))
        visible = shape[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
        if visible.any():
            out[ys, xs][visible] = next_id
            next_id += 1
    return out


class SilhouetteScenes(Dataset):
    """Masks only ({"ids": [S, S]}): synthetic scenes (masks alone, the presets taking turns) with 4 to
    `max_pasted` real outlines pasted; ids pruned to what the bit encoding holds and randomly reassigned."""

    def __init__(self, bank: SilhouetteBank, scenes: Sequence[SceneConfig], num_ids: int, seed: int = 0,
                 max_pasted: int = 24, length: int | None = None):
        self.bank, self.scenes, self.num_ids = bank, list(scenes), num_ids
        self.seed, self.max_pasted, self.length = seed, max_pasted, length

    def __len__(self) -> int:
        return self.length if self.length is not None else 2**62

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, sample_seed = _key(key)
        scene = generate_scene([self.seed, index, 7], self.scenes[index % len(self.scenes)], render=False)
        rng = np.random.default_rng([self.seed, sample_seed, 7])
        ids = paste_silhouettes(scene.ids, self.bank, int(rng.integers(4, self.max_pasted + 1)), rng)
        ids = transforms.reassign_ids(transforms.keep_largest(ids, self.num_ids - 1), self.num_ids, rng)
        return {"ids": torch.from_numpy(ids)}
