"""`ldmseg predict`: a folder of images -> predictions of a task (COCO-panoptic, semantic or depth PNGs)
+ overlays."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from ldmseg.data import coco_panoptic, formats, outputs
from ldmseg.errors import LDMSegError
from ldmseg.tasks import check_task
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


def load_pipeline(model: str, precision: str | None = None, announce: bool = True):
    """The pipeline of a directory, hub id or 'demo'; `precision` (fp32 | bf16) replaces its default one. With
    `announce`, says once on stderr what the model was trained on (`model_domain`)."""
    import sys

    from ldmseg.weights import resolve_pipeline_path

    path = resolve_pipeline_path(model)  # before the heavy imports: a bad name or an unreachable hub id fails fast
    from ldmseg.pipeline import LDMSegPipeline

    pipe = LDMSegPipeline.from_pretrained(path)
    if precision:
        pipe.register_to_config(default_precision=precision)
    if announce:
        print(f"ldmseg: model {model}: {model_domain(pipe)}", file=sys.stderr)
    return pipe


def model_preset(pipe, name: str | None) -> dict:
    """A named setting of the model (its config's `presets`), {} for none; an unknown name is one line."""
    if not name:
        return {}
    presets = dict(pipe.config.get("presets") or {})
    if name not in presets:
        have = ", ".join(presets) or "none"
        raise LDMSegError(f"--preset {name}: this model has no such preset (it has: {have})")
    return dict(presets[name])


def hint_slow_default(pipe, task: str, steps: int | None) -> None:
    """Say once when a many-step default runs on a CPU and the model names a faster preset."""
    import sys

    presets = pipe.config.get("presets") or {}
    if steps is None and pipe.unet.device.type == "cpu" and pipe.default_steps(task) >= 50 and "fast" in presets:
        fast = presets["fast"]
        print(f"ldmseg: hint: {pipe.default_steps(task)} sampling steps (this model's default, its authors' "
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


def _jobs(images: str, panoptic_json: str | None) -> list[tuple[object, Path, str]]:
    """(image_id, image path, output PNG name) per image: from the JSON when given, else `images` (image_files)."""
    if panoptic_json:
        gt = coco_panoptic.load_panoptic_json(panoptic_json)
        from ldmseg.commands.visualize import find_image

        return [(r.image_id, find_image(Path(images), r), r.png_file) for r in gt.records]
    files = image_files(images)
    stems = [p.stem for p in files]
    if len(set(stems)) != len(stems):
        twice = sorted({s for s in stems if stems.count(s) > 1})[0]
        raise LDMSegError(f"--images: two inputs are named {twice!r}; their outputs would collide")
    return [(p.stem, p, p.with_suffix(".png").name) for p in files]


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
                   precision: str | None = None, preset: str | None = None) -> Path:
    """Predict `task` for every image (default: the model's, ldmseg.tasks) and write, with OUT/overlays/*.png:
    - instances / panoptic: OUT/panoptic.json (with the model's categories for panoptic) + OUT/panoptic/*.png
      (panoptic also writes the semantic maps it merged, OUT/semantic/*.png);
    - semantic: OUT/semantic/<stem>.png, uint8 class ids (0 = none), the convention of `ldmseg data synth`, and
      OUT/categories.json naming them;
    - depth: OUT/depth/<stem>.png, uint16 = depth x 65535 (synth's), and with an ensemble
      OUT/depth_uncertainty/<stem>.png in the same units.
    ensemble_size: samples drawn per image (default: the model's); precision: fp32 | bf16 (default: the model's);
    preset: one of the model's named settings (`presets` in its config, e.g. the converted paper model's "fast"),
    under the flags given explicitly."""
    jobs = _jobs(images, panoptic_json)
    log = outputs.SkipLog()
    jobs = [job for job in jobs if log.attempt(str(job[1]), lambda p=job[1]: formats.check_image(p))]
    if not jobs:
        log.finish(Path(out))
    pipe = load_pipeline(model, precision)
    task = task or pipe.default_task()
    check_task(task, pipe.trained_tasks)
    named = model_preset(pipe, preset)
    steps = steps or named.get("num_inference_steps")
    if not precision and named.get("precision"):
        pipe.register_to_config(default_precision=named["precision"])
    if pipe.serves_bf16():  # this process serves bf16 only: no float32 UNet weights kept beside the bf16 ones
        pipe.keep_unet_in_bf16()
    hint_slow_default(pipe, task, steps)
    if task in ("semantic", "panoptic") and max((c["id"] for c in pipe.categories), default=0) > 255:
        raise LDMSegError("this model's class ids go above 255: they do not fit uint8 semantic PNGs")
    if scheduler:
        pipe.use_sampler(scheduler)
    gen = torch.Generator().manual_seed(seed)
    out_dir = Path(out)
    annotations, pictures = [], []
    for start in tqdm(range(0, len(jobs), batch_size), desc=f"predicting {task}", unit="batch"):
        chunk = [(job, log.attempt(str(job[1]), lambda p=job[1]: formats.read_rgb(p)))
                 for job in jobs[start:start + batch_size]]
        chunk = [(job, rgb) for job, rgb in chunk if rgb is not None]
        if not chunk:
            continue
        result = pipe([rgb for _, rgb in chunk], num_inference_steps=steps, processing_resolution=resolution,
                      generator=gen, ensemble_size=ensemble_size, task=task)
        for i, ((image_id, path, png), rgb) in enumerate(chunk):
            if task == "semantic":
                write_semantic(out_dir, png, rgb, result.semantic[i], pipe.categories)
            elif task == "depth":
                write_depth(out_dir, png, rgb, result.depth[i], result.depth_uncertainty[i])
            else:
                if task == "panoptic":  # the semantic map it was merged from comes for free
                    formats.write_png(out_dir / "semantic" / png, result.semantic[i].astype("uint8"))
                ids = result.panoptic[i]
                formats.write_panoptic_png(out_dir / "panoptic" / png, ids)
                formats.write_png(out_dir / "overlays" / png, overlay(rgb, ids))
                annotations.append({"image_id": image_id, "file_name": png, "segments_info": result.segments_info[i]})
                pictures.append({"id": image_id, "file_name": image_name(path, images), "height": rgb.shape[0],
                                 "width": rgb.shape[1]})
            log.succeeded()
    if task in ("semantic", "panoptic") and log.done:  # names the ids of OUT/semantic for evaluate and people
        formats.write_json(out_dir / "categories.json", {"categories": pipe.categories}, indent=1)
    if task in ("instances", "panoptic") and log.done:
        categories = pipe.categories if task == "panoptic" else AGNOSTIC_CATEGORIES
        formats.write_json(out_dir / "panoptic.json", {"images": pictures, "annotations": annotations,
                                                      "categories": categories})
    log.finish(out_dir)
    return out_dir


def write_semantic(out: Path, png: str, image, labels, categories: list[dict]) -> None:
    formats.write_png(out / "semantic" / png, labels.astype("uint8"))
    picture = blend(image, colorize_semantic(labels, categories))
    formats.write_png(out / "overlays" / png, with_legend(picture, class_colours(labels, categories)))


def write_depth(out: Path, png: str, image, depth, uncertainty) -> None:
    formats.write_depth_png(out / "depth" / png, depth)
    if uncertainty is not None and uncertainty.any():
        formats.write_depth_png(out / "depth_uncertainty" / png, uncertainty)
    formats.write_png(out / "overlays" / png, with_depth_bar(grid([image, colorize_depth(depth)])))
