"""A non-learned baseline segmenter: colour quantisation + connected components.

It shows how hard the benchmark scenes are: if colour alone separated segments, this would
score high. Used by `ldmseg demo` and the stage-2 benchmark as the floor to beat.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ldmseg.diffusion.postprocess import renumber


def colour_components(image: np.ndarray, levels: int = 4, blur: int = 3, min_area: int = 16
                      ) -> tuple[np.ndarray, list[dict]]:
    """uint8 HxWx3 -> (ids, segments_info): blur, quantise each channel to `levels`, label components."""
    smooth = ndimage.uniform_filter(image.astype(np.float32), size=(blur, blur, 1)) if blur > 1 else image
    q = np.clip((smooth / 256.0 * levels).astype(np.int64), 0, levels - 1)
    colour = q[..., 0] * levels * levels + q[..., 1] * levels + q[..., 2]
    ids = np.zeros(colour.shape, np.int64)
    next_id = 1
    for c in np.unique(colour):
        labels, n = ndimage.label(colour == c)
        ids[labels > 0] = labels[labels > 0] + next_id - 1
        next_id += n
    return renumber(ids, None, min_area)
