"""What `LDMSegPipeline` returns: diffusers' output convention (the diffusers pipelines keep theirs in a
pipeline_output module too)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers.utils import BaseOutput


@dataclass
class LDMSegOutput(BaseOutput):
    """What a task returns, per input image at its size:
    - instances / panoptic: `panoptic` int32 id maps (0 = VOID) and `segments_info` (id, category_id, area, bbox,
      score = mean confidence; class-aware for `panoptic`, category 1 for `instances`); optional `logits`
      [N, H, W] (instances); with a partial mask, given ids are kept and new segments get ids above them;
    - semantic: `semantic` int class-id maps (0 = none);
    - depth: `depth` float maps in [0, 1] and, from an ensemble, `depth_uncertainty` (median absolute deviation
      of the samples; zeros for one sample).
    As diffusers' outputs: `keys()` are the fields a task filled, `out["panoptic"]` / `out[0]` index them, and
    `to_tuple()` is what `return_dict=False` returns; `out.task` names the task."""

    panoptic: list[np.ndarray] | None = None
    segments_info: list[list[dict]] | None = None
    logits: list[torch.Tensor] | None = None
    known_agreement: list[float] | None = None  # inpainting: share of given pixels the model kept by itself
    semantic: list[np.ndarray] | None = None
    depth: list[np.ndarray] | None = None
    depth_uncertainty: list[np.ndarray] | None = None

    @classmethod
    def of(cls, task: str, **fields) -> LDMSegOutput:
        """The output with the fields a task filled, set at construction (BaseOutput's keys, indexing and
        `to_tuple()` cover exactly those, in declaration order) and the task as a plain attribute."""
        out = cls(**fields)
        object.__setattr__(out, "task", task)
        return out


def as_pictures(out: LDMSegOutput, categories: list[dict]) -> None:
    """`output_type="pil"`: every map of `out` replaced by its coloured picture (ids, classes with the model's
    colours, depth)."""
    from PIL import Image

    from ldmseg.viz import colorize, colorize_depth, colorize_semantic

    if out.panoptic is not None:
        out.panoptic = [Image.fromarray(colorize(p)) for p in out.panoptic]
    if out.semantic is not None:
        out.semantic = [Image.fromarray(colorize_semantic(s, categories)) for s in out.semantic]
    if out.depth is not None:
        out.depth = [Image.fromarray(colorize_depth(d)) for d in out.depth]
