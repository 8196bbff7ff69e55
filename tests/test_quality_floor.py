"""Seeded quality floors of the shipped models: a model that silently got worse (a bad packaging, a changed
default, a broken post-processing) fails here. Scenes of a seed no training or tuning used; floors a few points
under the scores measured when the floor was set (docs/benchmarks.md has the full benchmarks)."""

from __future__ import annotations

import numpy as np
import pytest

from ldmseg.data.synthetic import SceneConfig, generate_scene
from ldmseg.data.transforms import void_segments
from ldmseg.devices import image_generators
from ldmseg.metrics.panoptic import PanopticEvaluator, segments_from_ids
from ldmseg.metrics.semantic import SemanticEvaluator
from ldmseg.pipeline import LDMSegPipeline

SEED, NUM = 31_337, 8
FLOORS = {  # model: {task: minimum score}; PQ / mIoU x100 on the NUM scenes at the model's serving defaults
    "demo": {"instances": 40.0, "semantic": 50.0},  # measured 46.2 / 57.3 (ensemble of 8, fp32, AMD EPYC)
    "demo-one-step": {"instances": 43.0, "semantic": 46.0},  # measured 49.2 / 51.3 (one call, fp32, AMD EPYC)
}


@pytest.fixture(scope="module")
def scenes() -> list:
    return [generate_scene([SEED, i], SceneConfig.preset("default", 128)) for i in range(NUM)]


def score(pipe: LDMSegPipeline, scenes: list, task: str) -> float:
    out = pipe([s.image for s in scenes], task=task, generator=image_generators(0, range(len(scenes))))
    if task == "semantic":
        ev = SemanticEvaluator(13, 0)
        for s, pred in zip(scenes, out.semantic, strict=True):
            ev.process(s.semantic, pred)
        return 100 * ev.evaluate()["miou"]
    ev = PanopticEvaluator([], class_agnostic=True)
    for s, pred, segs in zip(scenes, out.panoptic, out.segments_info, strict=True):
        gt = void_segments(s.ids.astype(np.int64), s.segments, 0, crowd=True)
        ev.process(gt, segments_from_ids(gt), pred, segs)
    return 100 * ev.evaluate()["All"]["pq"]


@pytest.mark.parametrize(("model", "task"), [(m, t) for m, floors in FLOORS.items() for t in floors])
def test_shipped_models_keep_their_quality(model: str, task: str, scenes: list) -> None:
    pipe = LDMSegPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    assert score(pipe, scenes, task) >= FLOORS[model][task]


def test_the_one_step_demo_serves_every_task_in_one_call_per_image(scenes: list) -> None:
    """demo-one-step's defaults are one UNet call per task and image (panoptic: instances + semantic), no
    ensemble, from the zero input it was trained on."""
    pipe = LDMSegPipeline.from_pretrained("demo-one-step")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.config.initial_noise == "zeros" and pipe.scheduler.config.prediction_type == "sample"
    calls: list[int] = []
    hook = pipe.unet.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        for task, per_image in (("instances", 1), ("semantic", 1), ("depth", 1), ("panoptic", 2)):
            calls.clear()
            pipe([s.image for s in scenes[:3]], task=task)
            assert sum(calls) == 3 * per_image, task
    finally:
        hook.remove()
