"""The task registry (ldmseg.tasks), the serving config (ldmseg.serving) and what the pipeline does with them:
settings resolved once in one order, checked once, never written back to the pipeline; randomness per image."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from test_multitask import CATEGORIES, tiny_multitask_pipeline

from ldmseg.diffusion.merge import merge_panoptic
from ldmseg.errors import LDMSegError
from ldmseg.serving import ServingConfig, check_serving, resolve_serving
from ldmseg.tasks import DERIVED, SPECS, TASKS, TRAINABLE, available_tasks, task_spec

SRC = Path(__file__).resolve().parents[1] / "src" / "ldmseg"


def test_every_task_is_one_spec_and_derived_tasks_are_made_of_trainable_ones() -> None:
    assert set(SPECS) == set(TASKS) and set(TRAINABLE) | set(DERIVED) == set(TASKS)
    for spec in SPECS.values():
        assert all(p in TRAINABLE for p in spec.parts) and spec.outputs and spec.metric in ("pq", "miou", "rmse")
        assert spec.trainable == bool(spec.component)
    assert [s.name for s in SPECS.values() if s.primary] == ["instances"]
    assert available_tasks(("semantic", "depth")) == ("semantic", "depth")
    with pytest.raises(LDMSegError, match="unknown task 'normals'; tasks are instances, semantic, depth, panoptic"):
        task_spec("normals")


def test_no_task_name_is_compared_as_a_string_outside_the_registry() -> None:
    """The pipeline, commands, validation and training ask the spec (ldmseg.tasks) instead of comparing names."""
    pattern = re.compile(r"""task\s*(==|!=)\s*["']|task\s+(not\s+)?in\s+\(["']""")
    found = [f"{p.relative_to(SRC)}:{n}" for p in SRC.rglob("*.py") if p.name != "tasks.py"
             for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []


def test_settings_resolve_as_model_config_then_preset_then_explicit() -> None:
    config = {"default_processing_resolution": 64, "default_ensemble_size": 3, "default_precision": "fp32",
              "confidence_threshold": 0.4, "presets": {"fast": {"num_inference_steps": 5, "ensemble_size": 2}}}
    tasks = ("instances", "semantic")
    plain = resolve_serving(config, tasks, "panoptic")
    assert (plain.task, plain.processing_resolution, plain.ensemble_size, plain.num_inference_steps) == (
        "panoptic", 64, 3, None)
    fast = resolve_serving(config, tasks, "panoptic", "fast")
    assert (fast.num_inference_steps, fast.ensemble_size, fast.confidence_threshold) == (5, 2, 0.4)
    mine = resolve_serving(config, tasks, "panoptic", "fast", ensemble_size=1, task="semantic", min_area=None)
    assert (mine.ensemble_size, mine.num_inference_steps, mine.task) == (1, 5, "semantic")
    with pytest.raises(LDMSegError, match="preset 'slow': this model has no such preset \\(it has: fast\\)"):
        resolve_serving(config, tasks, "panoptic", "slow")
    with pytest.raises(LDMSegError, match="not trained for task 'depth'"):
        resolve_serving(config, tasks, "panoptic", task="depth")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("num_inference_steps", True, "num_inference_steps: must be a number, got True"),
    ("num_inference_steps", 0, "num_inference_steps: must be in \\[1, 1000\\]"),
    ("processing_resolution", 30, "processing_resolution: must be a positive multiple of 8"),
    ("ensemble_size", 1.5, "ensemble_size: expected an integer"),
    ("min_area", -5, "min_area: must be >= 0"),
    ("min_area", math.nan, "min_area: expected an integer"),
    ("confidence_threshold", 1.5, "confidence_threshold: must be a number in \\[0, 1\\]"),
    ("precision", "fp8", "precision must be one of fp32, bf16, fp16, auto"),
    ("sampler", "plms", "sampler must be one of ddim, dpm\\+\\+"),
    ("output_type", "foo", "output_type must be one of np, pil"),
    ("mask_rule", "most", "mask_rule must be one of nearest, any, all"),
])
def test_every_setting_is_checked_in_one_line(field: str, value: object, message: str) -> None:
    with pytest.raises(LDMSegError, match=message):
        check_serving(ServingConfig(task="instances", **{field: value}))


def test_a_call_resolves_its_settings_without_changing_the_pipeline() -> None:
    pipe = tiny_multitask_pipeline()
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    scheduler, config = pipe.scheduler, dict(pipe.config)
    ddim = pipe(image, task="instances", generator=torch.Generator().manual_seed(1)).panoptic[0]
    dpm = pipe(image, task="instances", sampler="dpm++", generator=torch.Generator().manual_seed(1)).panoptic[0]
    assert pipe.scheduler is scheduler and dict(pipe.config) == config
    serving = pipe.serving_config(task="instances", sampler="dpm++")
    again = pipe(image, serving=serving, generator=torch.Generator().manual_seed(1)).panoptic[0]
    assert np.array_equal(dpm, again) and ddim.shape == dpm.shape
    with pytest.raises(LDMSegError, match="ensemble_size: must be >= 1"):
        pipe(image, serving=serving, ensemble_size=0)
    with pytest.raises(LDMSegError, match="generator: give one torch.Generator, or a list of one per image \\(2\\)"):
        pipe([image, image], generator=[torch.Generator()] * 3)


def test_one_generator_per_image_makes_each_prediction_independent_of_the_batch() -> None:
    pipe = tiny_multitask_pipeline()
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(3)]

    def gens(seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]

    together = pipe(images, task="panoptic", ensemble_size=2, generator=gens([5, 6, 7]))
    alone = pipe(images[1], task="panoptic", ensemble_size=2, generator=gens([6]))
    reversed_ = pipe(images[::-1], task="panoptic", ensemble_size=2, generator=gens([7, 6, 5]))
    assert np.array_equal(together.panoptic[1], alone.panoptic[0])
    assert np.array_equal(together.semantic[1], alone.semantic[0])
    assert all(np.array_equal(a, b) for a, b in zip(together.panoptic, reversed_.panoptic[::-1], strict=True))


def test_a_one_step_model_starts_from_the_noise_mean_and_ignores_the_generator() -> None:
    pipe = tiny_multitask_pipeline()
    pipe.register_to_config(initial_noise="zeros", default_num_inference_steps=1, final_x0=True)
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    one = pipe(image, task="depth", generator=torch.Generator().manual_seed(1)).depth[0]
    two = pipe(image, task="depth", generator=torch.Generator().manual_seed(2)).depth[0]
    assert np.array_equal(one, two)
    pipe.register_to_config(initial_noise="gaussian")
    three = pipe(image, task="depth", generator=torch.Generator().manual_seed(2)).depth[0]
    assert not np.array_equal(two, three)


def test_merge_keeps_given_ids_by_number_and_numbers_new_segments_around_them() -> None:
    """Class-aware inpainting: a given stuff segment stays one segment under its own id (not pooled with its
    class), a given thing keeps its id, and a segment the model added gets an id no given segment has."""
    inst = np.array([[7, 7, 3, 3], [7, 7, 3, 3], [9, 9, 9, 9], [5, 5, 5, 5]])
    sem = np.array([[1, 1, 4, 4], [1, 1, 4, 4], [4, 4, 4, 4], [1, 1, 1, 1]])
    categories = [c for c in CATEGORIES]
    things = {c["id"] for c in categories if c.get("isthing")}
    assert 1 in things and 4 not in things
    ids, segs = merge_panoptic(inst, sem, categories, given=frozenset({3, 7}))
    assert (ids[:2, :2] == 7).all() and (ids[:2, 2:] == 3).all()  # given: own numbers, stuff 3 not pooled
    by_id = {s["id"]: s for s in segs}
    assert by_id[3]["category_id"] == 4 and by_id[7]["category_id"] == 1
    added = set(np.unique(ids)) - {0, 3, 7}
    assert added and not added & {3, 7} and all(by_id[i]["area"] == 4 for i in added)


def test_devices_are_checked_and_images_seeded_by_their_own_key() -> None:
    from ldmseg.devices import available_devices, image_seed, resolve_device

    assert resolve_device("cpu").type == "cpu" and available_devices()[0] == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(LDMSegError, match="device cuda:1: not available on this machine \\(available: cpu"):
            resolve_device("cuda:1")
    assert image_seed(0, "a.png") == image_seed(0, "a.png") != image_seed(1, "a.png") != image_seed(0, "b.png")
    assert 0 <= image_seed(2**62, 17) < 2**63


def test_float16_on_a_cpu_is_refused_at_to_not_inside_the_call() -> None:
    pipe = tiny_multitask_pipeline()
    with pytest.raises(LDMSegError, match="float16 weights do not run on a CPU"):
        pipe.to(torch.float16)
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(LDMSegError, match="float16 does not run on a CPU: use precision bf16 or fp32"):
        pipe(image, precision="fp16")
    assert pipe.unet.dtype == torch.float32


def test_every_model_command_names_a_missing_device_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture
                                                                  ) -> None:
    from ldmseg.cli import main

    tiny_multitask_pipeline().save_pretrained(tmp_path / "m")
    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--num", "2", "--resolution", "32"]) == 0
    s, m = tmp_path / "s", str(tmp_path / "m")
    gt = ["--gt-json", str(s / "panoptic.json"), "--gt-dir", str(s / "panoptic")]
    commands = {"predict": ["predict", "--model", m, "--images", str(s / "images")],
                "inpaint": ["inpaint", "--model", m, "--images", str(s / "images"), *gt],
                "reconstruct": ["reconstruct", "--ae", str(tmp_path / "m" / "mask_autoencoder"), *gt]}
    capsys.readouterr()
    for name, args in commands.items():
        assert main([*args, "--out", str(tmp_path / name), "--device", "cuda:7", "--threads", "1"]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "device cuda:7: not available on this machine" in err[0], (name, err)
        assert not (tmp_path / name / "panoptic.json").exists()
    assert main([*commands["reconstruct"], "--out", str(tmp_path / "r"), "--device", "cpu", "--threads", "1"]) == 0
    assert (tmp_path / "r" / "panoptic.json").exists()
