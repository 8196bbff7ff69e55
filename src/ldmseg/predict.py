"""`ldmseg predict`: a folder of images -> COCO-panoptic predictions + overlays."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from ldmseg.data import formats
from ldmseg.errors import LDMSegError
from ldmseg.viz import overlay

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def load_pipeline(model: str):
    from ldmseg.pipeline import LDMSegPipeline
    from ldmseg.weights import resolve_pipeline_path

    return LDMSegPipeline.from_pretrained(resolve_pipeline_path(model))


def _jobs(images: Path, panoptic_json: str | None) -> list[tuple[object, Path, str]]:
    """(image_id, image path, output PNG name) per image: from the JSON when given, else the folder."""
    if panoptic_json:
        gt = formats.load_panoptic_json(panoptic_json)
        from ldmseg.visualize import find_image

        return [(r.image_id, find_image(images, r), r.png_file) for r in gt.records]
    if not images.is_dir():
        raise LDMSegError(f"{images}: image folder not found")
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise LDMSegError(f"{images}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return [(p.stem, p, p.with_suffix(".png").name) for p in files]


def predict_folder(model: str, images: str, out: str, panoptic_json: str | None = None, steps: int | None = None,
                   scheduler: str | None = None, seed: int = 0, batch_size: int = 4,
                   resolution: int | None = None, ensemble_size: int | None = None) -> Path:
    """Segment every image; write OUT/panoptic.json, OUT/panoptic/*.png and OUT/overlays/*.png.
    ensemble_size: samples drawn per image, the consensus kept (default: the model's)."""
    jobs = _jobs(Path(images), panoptic_json)
    loaded = {path: formats.read_rgb(path) for _, path, _ in jobs}  # every file checked before any output
    pipe = load_pipeline(model)
    if scheduler:
        pipe.use_sampler(scheduler)
    gen = torch.Generator().manual_seed(seed)
    out_dir = Path(out)
    annotations = []
    for start in tqdm(range(0, len(jobs), batch_size), desc="segmenting", unit="batch"):
        chunk = jobs[start:start + batch_size]
        result = pipe([loaded[p] for _, p, _ in chunk], num_inference_steps=steps, processing_resolution=resolution,
                      generator=gen, ensemble_size=ensemble_size)
        for (image_id, path, png), ids, segs in zip(chunk, result.panoptic, result.segments_info, strict=True):
            formats.write_panoptic_png(out_dir / "panoptic" / png, ids)
            formats.write_png(out_dir / "overlays" / png, overlay(loaded[path], ids))
            annotations.append({"image_id": image_id, "file_name": png, "segments_info": segs})
    formats.write_json(out_dir / "panoptic.json", {
        "annotations": annotations,
        "categories": [{"id": 1, "name": "object", "supercategory": "object", "isthing": 1}]})
    return out_dir
