"""`ldmseg predict`: a folder of images -> predictions of a task (COCO-panoptic, semantic or depth PNGs)
+ overlays."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from ldmseg.data import coco_panoptic, formats, outputs
from ldmseg.data.run_record import RunRecord
from ldmseg.devices import image_generators, process_group, wait_for_everyone
from ldmseg.errors import LDMSegError
from ldmseg.tasks import task_spec
from ldmseg.viz import (
    blend,
    class_colours,
    colorize_depth,
    colorize_semantic,
    grid,
    overlay,
    with_depth_bar,
    with_legend,
)


def load_pipeline(model: str, announce: bool = True):
    """The pipeline of a directory, hub id or 'demo'. With `announce`, says once on stderr what the model was
    trained on (`model_domain`)."""
    import sys

    from ldmseg.weights import resolve_pipeline_path

    path = resolve_pipeline_path(model)  # before the heavy imports: a bad name or an unreachable hub id fails fast
    from ldmseg.pipeline import LDMSegPipeline

    pipe = LDMSegPipeline.from_pretrained(path)
    if announce:
        print(f"ldmseg: model {model}: {model_domain(pipe)}", file=sys.stderr)
    return pipe


def serve(model: str, preset: str | None = None, announce: bool = True, device: str | None = None, **settings):
    """(pipeline, its ServingConfig) for a command run: the model loaded on `device` (ldmseg.devices: auto = the
    accelerator where there is one), its settings resolved once (model config <- `preset` <- `settings`,
    ldmseg.serving). A run that serves bf16 only loads the UNet's weights in bf16 alone (no float32 copy beside
    autocast's)."""
    from ldmseg.devices import resolve_device

    where = resolve_device(device)  # before loading: an unavailable device is one line, at once
    pipe = load_pipeline(model, announce).to(where)
    serving = pipe.serving_config(preset, **settings)
    if pipe.serves_bf16(serving.precision):
        pipe.keep_unet_in_bf16()
    return pipe, serving


def hint_slow_default(pipe, serving) -> None:
    """Say once when a many-step default runs on a CPU and the model names a faster preset."""
    import sys

    presets = pipe.config.get("presets") or {}
    steps = serving.num_inference_steps or max(pipe.default_steps(t) for t in task_spec(serving.task).parts)
    if steps >= 50 and pipe.unet.device.type == "cpu" and "fast" in presets:
        fast = presets["fast"]
        print(f"ldmseg: hint: {steps} sampling steps (this model's default, its authors' "
              f"setting) are slow on a CPU; --preset fast runs {fast.get('num_inference_steps')} steps under "
              f"{fast.get('precision', 'the default')} precision (docs/usage.md, 'Use the paper's weights')",
              file=sys.stderr)


def model_domain(pipe) -> str:
    """What a model knows, from its config's `trained_on` (and its categories); a model saved without one says so."""
    text = "trained on " + (pipe.config.get("trained_on") or "unknown data (its config has no 'trained_on')")
    names = [c["name"] for c in pipe.categories]
    if names:
        shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
        text += f"; classes: {shown}"
    return text


class Job(NamedTuple):
    """One image of a run: its key (image_id, or file stem), where it is, its output PNG name and its `file_name`
    in the output JSON."""

    image_id: object
    path: Path
    png: str
    name: str


def _jobs(images: str, panoptic_json: str | None) -> list[Job]:
    """One Job per image: from the JSON when given (in its order), else `images` (image_files) in the order of their
    file stems, so that the outputs do not depend on the order the inputs came in."""
    if panoptic_json:
        gt = coco_panoptic.load_panoptic_json(panoptic_json)
        from ldmseg.commands.visualize import find_image

        found = [(r.image_id, find_image(Path(images), r), r.png_file) for r in gt.records]
        return [Job(key, path, png, image_name(path, images)) for key, path, png in found]
    files = image_files(images)
    stems = [p.stem for p in files]
    if len(set(stems)) != len(stems):
        twice = sorted({s for s in stems if stems.count(s) > 1})[0]
        raise LDMSegError(f"--images: two inputs are named {twice!r}; their outputs would collide")
    return sorted((Job(p.stem, p, p.with_suffix(".png").name, image_name(p, images)) for p in files),
                  key=lambda job: job.image_id)


def image_name(path: Path, images: str) -> str:
    """An image's `file_name` in the output JSON: its path inside the --images folder, else its name."""
    try:
        return path.relative_to(images).as_posix() if Path(images).is_dir() else path.name
    except ValueError:
        return path.name


def image_files(spec: str) -> list[Path]:
    """The images `--images` names: a folder (its image files), one file, a glob pattern, or '-' (paths on stdin,
    one per line)."""
    import glob
    import sys

    if spec == "-":
        files = [Path(line.strip()) for line in sys.stdin if line.strip()]
    elif Path(spec).is_dir():
        files = sorted(p for p in Path(spec).iterdir() if p.suffix.lower() in formats.IMAGE_SUFFIXES)
    elif Path(spec).is_file():
        files = [Path(spec)]
    elif glob.has_magic(spec):
        files = sorted(Path(p) for p in glob.glob(spec) if Path(p).suffix.lower() in formats.IMAGE_SUFFIXES)
    else:
        raise LDMSegError(f"{spec}: no such image file or folder")
    if not files:
        raise LDMSegError(f"{spec}: no images ({', '.join(formats.IMAGE_SUFFIXES)})")
    return files


AGNOSTIC_CATEGORIES = [{"id": 1, "name": "object", "supercategory": "object", "isthing": 1}]


def predict_folder(model: str, images: str, out: str, panoptic_json: str | None = None, steps: int | None = None,
                   scheduler: str | None = None, seed: int = 0, batch_size: int = 4,
                   resolution: int | None = None, ensemble_size: int | None = None, task: str | None = None,
                   precision: str | None = None, preset: str | None = None, device: str | None = None) -> Path:
    """Predict `task` for every image (default: the model's, ldmseg.tasks) and write, with OUT/overlays/*.png:
    - instances / panoptic: OUT/panoptic.json (with the model's categories for panoptic) + OUT/panoptic/*.png
      (panoptic also writes the semantic maps it merged, OUT/semantic/*.png);
    - semantic: OUT/semantic/<stem>.png, uint8 class ids (0 = none), the convention of `ldmseg data synth`, and
      OUT/categories.json naming them;
    - depth: OUT/depth/<stem>.png, uint16 = depth x 65535 (synth's), and with an ensemble
      OUT/depth_uncertainty/<stem>.png in the same units.
    ensemble_size: samples drawn per image (default: the model's); precision: fp32 | bf16 (default: the model's);
    preset: one of the model's named settings (`presets` in its config, e.g. the converted paper model's "fast"),
    under the flags given explicitly. Each image's noise comes from `seed` and its own key (image_id, else its file
    stem; ldmseg.devices.image_seed): its outputs do not depend on --batch-size or on the other images. Run again
    on the same `out` with the same settings, it continues a killed run (data.run_record): finished images are
    skipped, and the final outputs equal an uninterrupted run's."""
    jobs = _jobs(images, panoptic_json)
    log = outputs.SkipLog()
    jobs = [job for job in jobs if log.attempt(str(job.path), lambda p=job.path: formats.check_image(p))]
    if not jobs:
        log.finish(Path(out))
    pipe, serving = serve(model, preset, device=device, task=task, num_inference_steps=steps, sampler=scheduler,
                          processing_resolution=resolution, ensemble_size=ensemble_size, precision=precision)
    spec = task_spec(serving.task)
    hint_slow_default(pipe, serving)
    if spec.names_classes and max((c["id"] for c in pipe.categories), default=0) > 255:
        raise LDMSegError("this model's class ids go above 255: they do not fit uint8 semantic PNGs")
    out_dir = Path(out)
    rank, world = process_group()
    record = RunRecord(out_dir, {"model": model, "seed": seed, "images": images, **dataclasses.asdict(serving)},
                       rank, world)
    todo = [job for job in jobs if str(job.image_id) not in record.done]
    wait_for_everyone()  # every process has read what earlier runs finished before any writes a record
    bar = tqdm(total=len(todo), desc=f"predicting {spec.name}", unit="image", disable=rank != 0)
    todo = todo[rank::world]  # `accelerate launch`: each process its share, one bar (the first's) for them all
    for start in range(0, len(todo), batch_size):
        chunk = [(job, log.attempt(str(job.path), lambda p=job.path: formats.read_rgb(p)))
                 for job in todo[start:start + batch_size]]
        chunk = [(job, rgb) for job, rgb in chunk if rgb is not None]
        if chunk:
            predict_chunk(pipe, serving, chunk, seed, out_dir, record)
            for _ in chunk:
                log.succeeded()
        bar.update(min(batch_size * world, bar.total - bar.n))
    bar.close()
    wait_for_everyone()
    if rank != 0:  # the first process writes the set's JSON from every process's records
        return out_dir
    done = record.read()
    finished = [done[str(job.image_id)] for job in jobs if str(job.image_id) in done]  # in input order
    if spec.names_classes and finished:  # names the ids of OUT/semantic for evaluate and people
        formats.write_json(out_dir / "categories.json", {"categories": pipe.categories}, indent=1)
    if "panoptic" in spec.outputs and finished:
        annotations, pictures = [f["annotation"] for f in finished], [f["picture"] for f in finished]
        categories = pipe.categories if spec.class_aware else AGNOSTIC_CATEGORIES
        formats.write_json(out_dir / "panoptic.json", {"images": pictures, "annotations": annotations,
                                                      "categories": categories})
    log.finish(out_dir)
    return out_dir


def predict_chunk(pipe, serving, chunk: list[tuple[Job, object]], seed: int, out: Path, record: RunRecord) -> None:
    """Predict one batch of (job, image) pairs, write every image's files, then note each as finished."""
    spec = task_spec(serving.task)
    result = pipe([rgb for _, rgb in chunk], generator=image_generators(seed, [job.image_id for job, _ in chunk]),
                  serving=serving)
    for i, (job, rgb) in enumerate(chunk):
        maps = {key: value[i] for key, value in result.items() if isinstance(value, list)}
        for n, name in enumerate(spec.outputs):
            WRITERS[name](out, job.png, rgb, maps, pipe.categories, n == 0)
        entry = {}
        if "panoptic" in spec.outputs:
            entry["annotation"] = {"image_id": job.image_id, "file_name": job.png,
                                   "segments_info": maps["segments_info"]}
            entry["picture"] = {"id": job.image_id, "file_name": job.name, "height": rgb.shape[0],
                                "width": rgb.shape[1]}
        record.add(job.image_id, entry)


def write_panoptic(out: Path, png: str, image, maps: dict, categories: list[dict], with_overlay: bool) -> None:
    ids = maps["panoptic"]
    formats.write_panoptic_png(out / "panoptic" / png, ids)
    if with_overlay:
        formats.write_png(out / "overlays" / png, overlay(image, ids))


def write_semantic(out: Path, png: str, image, maps: dict, categories: list[dict], with_overlay: bool) -> None:
    labels = maps["semantic"]
    formats.write_png(out / "semantic" / png, labels.astype("uint8"))
    if with_overlay:
        picture = blend(image, colorize_semantic(labels, categories))
        formats.write_png(out / "overlays" / png, with_legend(picture, class_colours(labels, categories)))


def write_depth(out: Path, png: str, image, maps: dict, categories: list[dict], with_overlay: bool) -> None:
    depth, uncertainty = maps["depth"], maps.get("depth_uncertainty")
    formats.write_depth_png(out / "depth" / png, depth)
    if uncertainty is not None and uncertainty.any():
        formats.write_depth_png(out / "depth_uncertainty" / png, uncertainty)
    if with_overlay:
        formats.write_png(out / "overlays" / png, with_depth_bar(grid([image, colorize_depth(depth)])))


WRITERS = {"panoptic": write_panoptic, "semantic": write_semantic, "depth": write_depth}  # by TaskSpec.outputs
