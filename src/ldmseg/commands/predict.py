"""`ldmseg predict`: a folder of images -> predictions of a task (COCO-panoptic, semantic or depth PNGs)
+ overlays."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from ldmseg.data import formats
from ldmseg.errors import LDMSegError
from ldmseg.tasks import check_task
from ldmseg.viz import blend, colorize_depth, colorize_semantic, grid, overlay

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def load_pipeline(model: str, precision: str | None = None):
    """The pipeline of a directory, hub id or 'demo'; `precision` (fp32 | bf16) replaces its default one."""
    from ldmseg.pipeline import LDMSegPipeline
    from ldmseg.weights import resolve_pipeline_path

    pipe = LDMSegPipeline.from_pretrained(resolve_pipeline_path(model))
    if precision:
        pipe.register_to_config(default_precision=precision)
    return pipe


def _jobs(images: Path, panoptic_json: str | None) -> list[tuple[object, Path, str]]:
    """(image_id, image path, output PNG name) per image: from the JSON when given, else the folder."""
    if panoptic_json:
        gt = formats.load_panoptic_json(panoptic_json)
        from ldmseg.commands.visualize import find_image

        return [(r.image_id, find_image(images, r), r.png_file) for r in gt.records]
    if not images.is_dir():
        raise LDMSegError(f"{images}: image folder not found")
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise LDMSegError(f"{images}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return [(p.stem, p, p.with_suffix(".png").name) for p in files]


AGNOSTIC_CATEGORIES = [{"id": 1, "name": "object", "supercategory": "object", "isthing": 1}]


def predict_folder(model: str, images: str, out: str, panoptic_json: str | None = None, steps: int | None = None,
                   scheduler: str | None = None, seed: int = 0, batch_size: int = 4,
                   resolution: int | None = None, ensemble_size: int | None = None, task: str | None = None,
                   precision: str | None = None) -> Path:
    """Predict `task` for every image (default: the model's, ldmseg.tasks) and write, with OUT/overlays/*.png:
    - instances / panoptic: OUT/panoptic.json (with the model's categories for panoptic) + OUT/panoptic/*.png
      (panoptic also writes the semantic maps it merged, OUT/semantic/*.png);
    - semantic: OUT/semantic/<stem>.png, uint8 class ids (0 = none), the convention of `ldmseg data synth`;
    - depth: OUT/depth/<stem>.png, uint16 = depth x 65535 (synth's), and with an ensemble
      OUT/depth_uncertainty/<stem>.png in the same units.
    ensemble_size: samples drawn per image (default: the model's); precision: fp32 | bf16 (default: the model's)."""
    jobs = _jobs(Path(images), panoptic_json)
    log = formats.SkipLog()
    jobs = [job for job in jobs if log.attempt(str(job[1]), lambda p=job[1]: formats.check_image(p))]
    if not jobs:
        log.finish(Path(out))
    pipe = load_pipeline(model, precision)
    task = task or pipe.default_task()
    check_task(task, pipe.trained_tasks)
    if task in ("semantic", "panoptic") and max((c["id"] for c in pipe.categories), default=0) > 255:
        raise LDMSegError("this model's class ids go above 255: they do not fit uint8 semantic PNGs")
    if scheduler:
        pipe.use_sampler(scheduler)
    gen = torch.Generator().manual_seed(seed)
    out_dir = Path(out)
    annotations = []
    for start in tqdm(range(0, len(jobs), batch_size), desc=f"predicting {task}", unit="batch"):
        chunk = [(job, log.attempt(str(job[1]), lambda p=job[1]: formats.read_rgb(p)))
                 for job in jobs[start:start + batch_size]]
        chunk = [(job, rgb) for job, rgb in chunk if rgb is not None]
        if not chunk:
            continue
        result = pipe([rgb for _, rgb in chunk], num_inference_steps=steps, processing_resolution=resolution,
                      generator=gen, ensemble_size=ensemble_size, task=task)
        for i, ((image_id, _, png), rgb) in enumerate(chunk):
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
            log.succeeded()
    if task in ("instances", "panoptic") and log.done:
        categories = pipe.categories if task == "panoptic" else AGNOSTIC_CATEGORIES
        formats.write_json(out_dir / "panoptic.json", {"annotations": annotations, "categories": categories})
    log.finish(out_dir)
    return out_dir


def write_semantic(out: Path, png: str, image, labels, categories: list[dict]) -> None:
    formats.write_png(out / "semantic" / png, labels.astype("uint8"))
    formats.write_png(out / "overlays" / png, blend(image, colorize_semantic(labels, categories)))


def write_depth(out: Path, png: str, image, depth, uncertainty) -> None:
    formats.write_depth_png(out / "depth" / png, depth)
    if uncertainty is not None and uncertainty.any():
        formats.write_depth_png(out / "depth_uncertainty" / png, uncertainty)
    formats.write_png(out / "overlays" / png, grid([image, colorize_depth(depth)]))
