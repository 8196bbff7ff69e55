"""`ldmseg demo`: the main job on the embedded default, end to end in about a minute.

Generates held-out synthetic scenes (COCO-panoptic layout), segments them with the packaged
LDMSeg demo model (when shipped) and the non-learned baseline, reconstructs their masks with
the packaged demo mask autoencoder (stage 1's ceiling), scores everything with the
panopticapi-exact evaluator, and writes overlays, an HTML summary and OUT/results.json (the scores with the
precision and machine they were measured on; README's demo numbers are bench/results/demo.json, such a file).
"""

from __future__ import annotations

import html
import time
from pathlib import Path

import numpy as np

from ldmseg.commands.baseline import colour_components
from ldmseg.data import coco_panoptic, formats
from ldmseg.data.synthetic import SceneConfig, write_dataset
from ldmseg.diffusion.postprocess import majority_categories
from ldmseg.metrics.panoptic import evaluate_files, format_table
from ldmseg.viz import colorize_depth, colorize_semantic, grid, match_ids, overlay

DEMO_SIZE = 128


def _write_predictions(root: Path, name: str, preds: dict) -> tuple[Path, Path]:
    annotations = []
    for rec, ids, segs in preds.values():
        formats.write_panoptic_png(root / name / "panoptic" / rec.png_file, ids)
        annotations.append({"image_id": rec.image_id, "file_name": rec.png_file, "segments_info": segs})
    formats.write_json(root / name / "panoptic.json", {"annotations": annotations})
    return root / name / "panoptic.json", root / name / "panoptic"


def run_demo(out: Path, num: int = 50, seed: int = 12345, verbose: bool = False, device: str = "auto") -> dict:
    """Run the demo; returns the results of each method (pq_compute shape, class-agnostic). `verbose` also prints
    the mask AE's latent statistics."""
    from tqdm import tqdm

    start = time.time()
    data = write_dataset(out / "data", num, SceneConfig.preset("default", DEMO_SIZE), seed=seed)
    gt = coco_panoptic.load_panoptic_json(data / "panoptic.json")
    images = {r.png_file: formats.read_rgb(data / "images" / r.png_file) for r in gt.records}
    gt_ids = {r.png_file: formats.read_panoptic_png(data / "panoptic" / r.png_file) for r in gt.records}

    methods: dict[str, dict] = {"baseline (colour + components)": {}}
    for rec in tqdm(gt.records, desc="baseline", unit="image"):
        ids, segs = colour_components(images[rec.png_file])
        majority_categories(ids, segs, gt_ids[rec.png_file], rec.segments)
        methods["baseline (colour + components)"][rec.png_file] = (rec, ids, segs)

    from ldmseg.commands.reconstruct import reconstruct_set

    reconstruct_set("demo", str(data / "images"), str(data / "panoptic.json"), str(data / "panoptic"),
                    str(out / "ae_reconstruction"), size=DEMO_SIZE, verbose=verbose)

    results, pred_dirs, task_results, precision = {}, {}, {}, None
    for name, preds in methods.items():
        pj, pd = _write_predictions(out, "baseline", preds)
        results[name], pred_dirs[name] = evaluate_files(data / "panoptic.json", data / "panoptic", pj, pd, True), pd
    ae_name = "mask AE reconstruction (stage 1)"
    from ldmseg.weights import DEMO_DIR

    if (DEMO_DIR / "model_index.json").exists():  # the stage-2 demo model, when this installation ships one
        from ldmseg.commands.predict import predict_folder

        pred = predict_folder("demo", str(data / "images"), str(out / "ldmseg"), str(data / "panoptic.json"),
                              device=device)
        name = "LDMSeg (latent diffusion)"
        results[name] = evaluate_files(data / "panoptic.json", data / "panoptic", pred / "panoptic.json",
                                       pred / "panoptic", True)
        pred_dirs[name] = pred / "panoptic"
        task_results, precision = _other_tasks(data, out, pred, device)
    recon = out / "ae_reconstruction"
    results[ae_name] = evaluate_files(data / "panoptic.json", data / "panoptic", recon / "panoptic.json",
                                      recon / "panoptic", True)
    pred_dirs[ae_name] = recon / "panoptic"

    rows = []
    for rec in gt.records[:8]:
        panels = [images[rec.png_file], overlay(images[rec.png_file], gt_ids[rec.png_file])]
        titles = ["image", "ground truth"]
        for name, pd in pred_dirs.items():
            matched = match_ids(gt_ids[rec.png_file], formats.read_panoptic_png(pd / rec.png_file))
            panels.append(overlay(images[rec.png_file], matched))  # as the GT is drawn, matches in its colours
            titles.append(name.split(" (")[0])
        panels, titles = _task_panels(out, data, rec.png_file, panels, titles)
        rows.append(grid(panels, titles))
    formats.write_png(out / "summary.png", np.concatenate(rows, 0))
    _write_html(out, results, task_results, num, time.time() - start)
    write_results(out / "results.json", results, task_results, num, seed, precision, time.time() - start)
    for name, res in results.items():
        print(f"\n{name} — class-agnostic PQ on {num} held-out synthetic scenes ({DEMO_SIZE}x{DEMO_SIZE})")
        print(format_table(res))
    for line in _task_lines(task_results):
        print(line)
    print(f"\nwrote {out / 'summary.html'}, {out / 'summary.png'} and {out / 'results.json'} in "
          f"{time.time() - start:.0f} s")
    return results


def write_results(path: Path, results: dict, task_results: dict, num: int, seed: int, precision: str | None,
                  seconds: float) -> None:
    """The demo's scores (fractions, as evaluate writes them) with what they were measured on: the scenes, the
    demo model's precision and the machine (bf16 and fp32 scores differ slightly, and bf16 is chosen by the CPU)."""
    import torch

    from ldmseg.machine import machine

    scores = {name: {k: res["All"][k] for k in ("pq", "sq", "rq")} for name, res in results.items()}
    other = {}
    if "class-aware panoptic" in task_results:
        other["class-aware panoptic"] = {k: {m: r[m] for m in ("pq", "sq", "rq")}
                                         for k, r in task_results["class-aware panoptic"].items() if k != "per_class"}
    if "semantic" in task_results:
        other["semantic"] = {k: task_results["semantic"][k] for k in ("miou", "pixel_accuracy")}
    if "depth" in task_results:
        other["depth"] = {k: task_results["depth"][k] for k in ("rmse", "absrel", "delta1")}
    formats.write_json(path, {"command": f"ldmseg demo --num {num} --seed {seed}", "scenes": num, "seed": seed,
                              "resolution": DEMO_SIZE, "precision": precision, "machine": machine(),
                              "threads": torch.get_num_threads(), "seconds": round(seconds, 1),
                              "class_agnostic": scores, **other}, indent=1)


def _other_tasks(data: Path, out: Path, pred: Path, device: str = "auto") -> tuple[dict, str]:
    """The demo model's other tasks on the same scenes, where it has them: class-aware PQ of its panoptic
    output, mIoU of the semantic maps that were merged into it, depth RMSE; and the precision it served in."""
    from ldmseg.commands.predict import load_pipeline, predict_folder
    from ldmseg.metrics.depth import evaluate_depth_dirs
    from ldmseg.metrics.semantic import evaluate_semantic_dirs

    pipe = load_pipeline("demo", announce=False)
    tasks, precision = pipe.tasks, "bf16" if pipe.serves_bf16() else "fp32"
    found = {}
    if "panoptic" in tasks:
        found["class-aware panoptic"] = evaluate_files(data / "panoptic.json", data / "panoptic",
                                                       pred / "panoptic.json", pred / "panoptic")
        found["semantic"] = evaluate_semantic_dirs(data / "semantic", pred / "semantic")
    if "depth" in tasks:
        depth = predict_folder("demo", str(data / "images"), str(out / "ldmseg-depth"), task="depth",
                               device=device)
        found["depth"] = evaluate_depth_dirs(data / "depth", depth / "depth")
    return found, precision


def _task_panels(out: Path, data: Path, png: str, panels: list, titles: list) -> tuple[list, list]:
    """The semantic and depth pictures (GT, then the demo model's) where the model predicted them."""
    from ldmseg.data.synthetic import categories

    semantic, depth = out / "ldmseg" / "semantic" / png, out / "ldmseg-depth" / "depth" / png
    if semantic.exists():
        panels += [colorize_semantic(formats.read_label_png(f), categories()) for f in (data / "semantic" / png,
                                                                                         semantic)]
        titles += ["GT semantic", "LDMSeg semantic"]
    if depth.exists():
        panels += [colorize_depth(formats.read_depth_png(f)) for f in (data / "depth" / png, depth)]
        titles += ["GT depth", "LDMSeg depth"]
    return panels, titles


def _task_lines(task_results: dict) -> list[str]:
    lines = []
    if "class-aware panoptic" in task_results:
        r = task_results["class-aware panoptic"]
        lines.append("LDMSeg class-aware panoptic (instances + semantic merged): PQ "
                     + ", ".join(f"{k} {100 * r[k]['pq']:.1f}" for k in ("All", "Things", "Stuff") if k in r))
    if "semantic" in task_results:
        r = task_results["semantic"]
        lines.append(f"LDMSeg semantic: mIoU {100 * r['miou']:.1f}, pixel accuracy {100 * r['pixel_accuracy']:.1f}")
    if "depth" in task_results:
        r = task_results["depth"]
        lines.append(f"LDMSeg depth: RMSE {r['rmse']:.3f}, AbsRel {r['absrel']:.3f}, "
                     f"delta<1.25 {100 * r['delta1']:.1f}%")
    return lines


READING_GUIDE = (
    "How to read this: a predicted segment counts as found when it overlaps a ground-truth segment with IoU above "
    "0.5. RQ (recognition quality) is the F1 score of found segments; SQ (segmentation quality) is the mean IoU of "
    "the found ones; PQ = SQ x RQ, all in percent, higher is better. The mask AE row encodes each ground-truth mask "
    "with stage 1 and decodes it again, without the image: it is the ceiling stage 2 can reach through those latents. "
    "In the pictures black is VOID (no segment), white lines are segment borders, and a predicted segment that "
    "matches a ground-truth one wears its colour.")


def _write_html(out: Path, results: dict, task_results: dict, num: int, seconds: float) -> None:
    tasks = "".join(f"<li>{html.escape(line)}</li>" for line in _task_lines(task_results))
    rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{100 * r['All']['pq']:.1f}</td><td>{100 * r['All']['sq']:.1f}"
                   f"</td><td>{100 * r['All']['rq']:.1f}</td></tr>" for n, r in results.items())
    page = (f"<!doctype html><meta charset='utf-8'><title>ldmseg demo</title><h1>ldmseg demo</h1>"
            f"<p>{num} held-out synthetic scenes, class-agnostic PQ (panopticapi rules); {seconds:.0f} s.</p>"
            f"<table border=1 cellpadding=4><tr><th>method</th><th>PQ</th><th>SQ</th><th>RQ</th></tr>{rows}</table>"
            + f"<p>{READING_GUIDE}</p>"
            + (f"<p>The demo model's other tasks on the same scenes:</p><ul>{tasks}</ul>" if tasks else "")
            + "<p><img src='summary.png'></p>")
    with formats.atomic_path(out / "summary.html") as tmp:
        tmp.write_text(page)
