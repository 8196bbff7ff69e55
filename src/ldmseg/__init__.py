"""LDMSeg: latent diffusion for panoptic segmentation and mask inpainting.

Heavy modules (torch, diffusers) load lazily so that light commands such as
`ldmseg evaluate` start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from ldmseg.fast_import import defer_diffusers_model_packages

defer_diffusers_model_packages()  # before any diffusers import: ~1-2.5 s less start-up (ldmseg/fast_import.py)

__version__ = "0.1.0"

_LAZY = {
    "LDMSegPipeline": "ldmseg.pipeline",
    "LDMSegOutput": "ldmseg.pipeline",
    "MaskAutoencoder": "ldmseg.models.mask_autoencoder",
    "OriginalMaskAutoencoder": "ldmseg.models.original_autoencoder",
    "PanopticEvaluator": "ldmseg.metrics.panoptic",
    "SemanticEvaluator": "ldmseg.metrics.semantic",
    "DepthEvaluator": "ldmseg.metrics.depth",
    "SceneConfig": "ldmseg.data.synthetic",
    "generate_scene": "ldmseg.data.synthetic",
    "demo_model_dir": "ldmseg.weights",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ldmseg' has no attribute {name!r}")


__all__ = list(_LAZY)
