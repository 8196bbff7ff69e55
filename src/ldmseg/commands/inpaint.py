"""`ldmseg inpaint`: complete a partial panoptic mask (paper Algorithm 3), for one image or for a
COCO-panoptic set whose ground truth is partly hidden by a mask generator (the benchmark setting)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ldmseg.commands.predict import AGNOSTIC_CATEGORIES, serve
from ldmseg.data import coco_panoptic, formats, outputs
from ldmseg.data.masks import make_mask
from ldmseg.data.run_record import RunRecord
from ldmseg.data.transforms import resize_labels
from ldmseg.devices import image_generators, image_seed, process_group, wait_for_everyone
from ldmseg.errors import LDMSegError
from ldmseg.tasks import task_spec
from ldmseg.viz import overlay


def _serve(model: str, settings: dict):
    """(pipeline, ServingConfig) for inpainting: `settings` are ServingConfig fields (None = the model's); the
    model's task unless `task` names another one that inpaints."""
    pipe, serving = serve(model, **settings)
    pipe.set_progress_bar_config(disable=True)
    if not task_spec(serving.task).inpaints:
        able = ", ".join(t for t in pipe.tasks if task_spec(t).inpaints) or "none"
        raise LDMSegError(f"--task {serving.task}: it does not complete partial masks (tasks that do: {able})")
    return pipe, serving


def inpaint_image(model: str, image: str, partial: str, out: str, valid: str | None = None, seed: int = 0,
                  **settings) -> dict:
    """Write OUT/panoptic.png (COCO RGB ids), OUT/panoptic.json and OUT/overlay.png; returns the annotation.
    The given segments keep their numbers in every task; segments the model adds get fresh ones. `settings`:
    ServingConfig fields (task, num_inference_steps, sampler, mask_rule, ensemble_size, precision)."""
    rgb = formats.read_rgb(image)
    given = formats.read_panoptic_png(partial)
    if given.shape != rgb.shape[:2]:
        raise LDMSegError(f"{partial}: size {given.shape[1]}x{given.shape[0]} differs from the image's "
                          f"{rgb.shape[1]}x{rgb.shape[0]}")
    known = formats.read_binary_mask(valid) if valid else given != 0
    if known.shape != given.shape:
        raise LDMSegError(f"{valid}: size {known.shape[1]}x{known.shape[0]} differs from the partial mask's")
    if not known.any():
        why = "the valid mask is all zero" if valid else "all VOID"
        raise LDMSegError(f"{valid or partial}: no pixel is given ({why}), so there is nothing to complete; "
                          "`ldmseg predict` segments the image from scratch")
    pipe, serving = _serve(model, settings)
    result = pipe(rgb, generator=torch.Generator().manual_seed(seed), partial_mask=given, valid_mask=known,
                  serving=serving)
    ids, segs = result.panoptic[0], result.segments_info[0]
    out_dir = Path(out)
    formats.write_panoptic_png(out_dir / "panoptic.png", ids)
    formats.write_png(out_dir / "overlay.png", overlay(rgb, ids))
    annotation = {"image_id": Path(image).stem, "file_name": "panoptic.png", "segments_info": segs,
                  "known_agreement": result.known_agreement[0]}
    formats.write_json(out_dir / "panoptic.json", {"annotations": [annotation],
                                                  "categories": categories_of(pipe, serving)})
    return annotation


def categories_of(pipe, serving) -> list[dict]:
    """The categories of the output JSON: the model's for a class-aware task, else one 'object' category."""
    return pipe.categories if task_spec(serving.task).class_aware else AGNOSTIC_CATEGORIES


def hide_parts(gt_ids: np.ndarray, mask_type: str, drop_rate: float, block_size: int, resolution: int,
               rng: np.random.Generator) -> np.ndarray:
    """Known-pixel mask for a GT map: generated at the processing resolution (B is in pixels there),
    then resized to the map's size."""
    mask = make_mask(mask_type, (resolution, resolution), drop_rate, block_size, rng)
    return resize_labels(mask.astype(np.uint8), gt_ids.shape).astype(bool)


def inpaint_set(model: str, images: str, panoptic_json: str, panoptic_dir: str, out: str, hiding: dict,
                seed: int = 0, batch_size: int = 4, **settings) -> dict:
    """Hide parts of every GT map (`hiding`: drop_rate, block_size, mask_type), complete them; write COCO-panoptic
    predictions (GT image_id / file_name) plus OUT/masks/*.png (the known pixels given, white). `settings`:
    ServingConfig fields and `device`. An image's hidden parts and noise come from `seed` and its image_id alone
    (ldmseg.devices.image_seed), so, as `ldmseg predict`, a run splits over `accelerate launch` processes and
    continues a killed run on the same `out` (data.run_record) with the uninterrupted run's outputs. Returns
    summary statistics."""
    from ldmseg.commands.visualize import find_image

    gt = coco_panoptic.load_panoptic_json(panoptic_json)
    pipe, serving = _serve(model, settings)
    out_dir, log = Path(out), outputs.SkipLog()
    rank, world = process_group()
    record = RunRecord(out_dir, {"model": model, "seed": seed, "images": images, "gt_json": panoptic_json, **hiding,
                                 **dataclasses.asdict(serving)}, rank, world)
    todo = [rec for rec in gt.records if str(rec.image_id) not in record.done]
    wait_for_everyone()  # every process has read what earlier runs finished before any writes a record
    bar = tqdm(total=len(todo), desc="inpainting", unit="image", disable=rank != 0)
    todo = todo[rank::world]  # `accelerate launch`: each process its share, one bar (the first's) for them all

    def read(rec) -> tuple[np.ndarray, np.ndarray]:
        rgb, ids = formats.read_rgb(find_image(Path(images), rec)), coco_panoptic.read_panoptic_ids(panoptic_dir, rec)
        if ids.shape != rgb.shape[:2]:
            raise LDMSegError(f"{Path(panoptic_dir) / rec.png_file}: size {ids.shape[::-1]} differs from its image")
        return rgb, ids

    for start in range(0, len(todo), batch_size):
        loaded = [(rec, log.attempt(rec.png_file, lambda r=rec: read(r))) for rec in todo[start:start + batch_size]]
        loaded = [(rec, pair) for rec, pair in loaded if pair is not None]
        if loaded:
            inpaint_chunk(pipe, serving, loaded, hiding, seed, out_dir, record)
            for _ in loaded:
                log.succeeded()
        bar.update(min(batch_size * world, bar.total - bar.n))
    bar.close()
    wait_for_everyone()
    done = record.read()
    finished = [done[str(rec.image_id)] for rec in gt.records if str(rec.image_id) in done]  # in the GT's order
    if rank == 0 and finished:
        formats.write_json(out_dir / "panoptic.json", {"annotations": [f["annotation"] for f in finished],
                                                      "categories": categories_of(pipe, serving)})
    log.finish(out_dir)
    return {"images": len(finished), "known_share": float(np.mean([f["known_share"] for f in finished])),
            "known_agreement": float(np.mean([f["known_agreement"] for f in finished]))}


def inpaint_chunk(pipe, serving, loaded: list, hiding: dict, seed: int, out: Path, record: RunRecord) -> None:
    """Hide parts of one batch of (GT record, (image, GT ids)) pairs, complete them, write every image's files,
    then note each as finished."""
    recs, rgbs, gts = [rec for rec, _ in loaded], [pair[0] for _, pair in loaded], [pair[1] for _, pair in loaded]
    rngs = [np.random.default_rng(image_seed(seed, rec.image_id)) for rec in recs]
    valids = [hide_parts(g, hiding["mask_type"], hiding["drop_rate"], hiding["block_size"],
                         serving.processing_resolution, rng) for g, rng in zip(gts, rngs, strict=True)]
    partials = [np.where(v, g, 0) for g, v in zip(gts, valids, strict=True)]
    result = pipe(rgbs, generator=image_generators(seed, [rec.image_id for rec in recs]), partial_mask=partials,
                  valid_mask=valids, serving=serving)
    for rec, ids, segs, valid, agreement in zip(recs, result.panoptic, result.segments_info, valids,
                                                result.known_agreement, strict=True):
        formats.write_panoptic_png(out / "panoptic" / rec.png_file, ids)
        formats.write_png(out / "masks" / rec.png_file, valid.astype(np.uint8) * 255)
        record.add(rec.image_id, {"annotation": {"image_id": rec.image_id, "file_name": rec.png_file,
                                                 "segments_info": segs},
                                  "known_share": float(valid.mean()), "known_agreement": float(agreement)})
