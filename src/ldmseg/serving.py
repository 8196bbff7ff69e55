"""How a prediction is served, decided once: the serving settings of one call (or one command run) as a frozen
`ServingConfig`, resolved in one function (the model's config <- a named preset <- explicit arguments) and checked
by one `check_serving`, for the CLI and the Python API alike. The defaults live here and in the model's config,
nowhere else; nothing is changed on the loaded pipeline to serve a setting.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ldmseg import checks
from ldmseg.diffusion.inpainting import DEFAULT_MASK_RULE, MASK_RULES
from ldmseg.diffusion.schedule import SAMPLERS
from ldmseg.errors import LDMSegError
from ldmseg.tasks import check_task

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
OUTPUT_TYPES = ("np", "pil")


@dataclass(frozen=True)
class ServingConfig:
    """The settings of one prediction. `num_inference_steps` None: each task its own count (the model's
    `task_num_inference_steps`, else its default); `sampler` None: the model's scheduler; `min_area` None: the
    model's `min_area_at_512`, scaled to each image (pixels at the input size otherwise)."""

    task: str
    num_inference_steps: int | None = None
    sampler: str | None = None
    processing_resolution: int = 512
    ensemble_size: int = 1
    precision: str = "fp32"
    confidence_threshold: float = 0.5
    min_area: int | None = None
    mask_rule: str = DEFAULT_MASK_RULE
    keep_known: bool = True
    output_type: str = "np"

    def replace(self, **changes: Any) -> ServingConfig:
        """A copy with `changes` (None values ignored), checked again."""
        return check_serving(dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None}))


FIELDS = tuple(f.name for f in dataclasses.fields(ServingConfig))


def model_defaults(config: dict, default_task: str) -> dict[str, Any]:
    """The serving settings a model's config gives (LDMSegPipeline's config keys)."""
    return {"task": default_task, "processing_resolution": config.get("default_processing_resolution", 512),
            "ensemble_size": config.get("default_ensemble_size", 1),
            "precision": config.get("default_precision", "fp32"),
            "confidence_threshold": config.get("confidence_threshold", 0.5)}


def named_preset(config: dict, name: str | None) -> dict[str, Any]:
    """A model's named setting (its config's `presets`), {} for none; an unknown name or key is one line."""
    if not name:
        return {}
    presets = dict(config.get("presets") or {})
    if name not in presets:
        raise LDMSegError(f"preset {name!r}: this model has no such preset (it has: {', '.join(presets) or 'none'})")
    preset = dict(presets[name])
    unknown = sorted(set(preset) - set(FIELDS))
    if unknown:
        raise LDMSegError(f"preset {name!r} in the model's config: unknown setting {unknown[0]!r} "
                          f"(settings are {', '.join(FIELDS)})")
    return preset


def resolve_serving(config: dict, trained_tasks: tuple[str, ...], default_task: str, preset: str | None = None,
                    **explicit: Any) -> ServingConfig:
    """The one place serving settings are decided: model config <- preset <- explicit arguments (None = not
    given), then checked (`check_serving`) and the task checked against the model's."""
    unknown = sorted(set(explicit) - set(FIELDS))
    if unknown:
        raise TypeError(f"unknown serving setting {unknown[0]!r}")
    values = {**model_defaults(config, default_task), **named_preset(config, preset),
              **{k: v for k, v in explicit.items() if v is not None}}
    serving = check_serving(ServingConfig(**values))
    check_task(serving.task, trained_tasks)
    return serving


def check_serving(s: ServingConfig) -> ServingConfig:
    """Every setting in range, one line naming the first that is not (the CLI's flags use the same checks)."""
    if s.num_inference_steps is not None:
        _number("num_inference_steps", s.num_inference_steps, checks.sampling_steps)
    _number("processing_resolution", s.processing_resolution, checks.resolution)
    _number("ensemble_size", s.ensemble_size, checks.positive)
    if s.min_area is not None:
        _number("min_area", s.min_area, checks.non_negative)
    threshold = s.confidence_threshold
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) \
            or not 0 <= threshold <= 1:
        raise LDMSegError(f"confidence_threshold: must be a number in [0, 1], got {threshold!r}")
    _choice("precision", s.precision, PRECISIONS)
    if s.sampler is not None:
        _choice("sampler", s.sampler, SAMPLERS)
    _choice("mask_rule", s.mask_rule, MASK_RULES)
    _choice("output_type", s.output_type, OUTPUT_TYPES)
    if not isinstance(s.keep_known, bool):
        raise LDMSegError(f"keep_known: must be True or False, got {s.keep_known!r}")
    return s


def _number(name: str, value: object, check) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LDMSegError(f"{name}: must be a number, got {value!r}")
    checks.argument(name, value, check)


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise LDMSegError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
