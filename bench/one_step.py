"""One-step models against the multi-step ensembles they come from (issue 46), on fresh synthetic scenes: every
task's score, UNet calls per image and seconds per image, each model served at its own defaults, and the
multi-step model at one call (one sample, one step) for reference; then the wall time of a whole `ldmseg
predict` on the same scenes for both models.

    python bench/one_step.py [--one-step demo-one-step] [--ensemble demo] [--num 100]
    python bench/one_step.py --curve 300=runs/ck300 1300=runs/ck1300 [--curve-only]   # the run's score vs step

The scenes use a seed no training, tuning or other benchmark used (SEED). Writes bench/results/one_step.json and
the `one_step` section of docs/benchmarks.md. --curve scores exported checkpoints of the distillation run (STEP=DIR,
`ldmseg distill` exports one at its end; `scripts/export_checkpoint.py` any other) on the same scenes at one call per
task; --curve-only adds that curve to the saved results without re-measuring the models. --id-ways
LABEL=DIR ... scores one-step models trained alike but for how instance ids are targeted. --camvid DIR (CamVid's
folder: val/, valannot/) adds the CamVid val rows of --camvid-models (mIoU, seconds per photo,
a whole `ldmseg predict` of the 101 photos); with --curve-only, to the saved results.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, bench_pipeline, machine, save_results
from multitask import NUM_CLASSES, scenes

from ldmseg.data.formats import write_png
from ldmseg.data.synthetic import categories
from ldmseg.data.transforms import void_segments
from ldmseg.metrics.depth import DepthEvaluator
from ldmseg.metrics.panoptic import PanopticEvaluator, segments_from_ids
from ldmseg.metrics.semantic import SemanticEvaluator
from ldmseg.training.autoencoder import VAL_SEED_OFFSET

SEED = 9_407 + VAL_SEED_OFFSET  # fresh: no training, validation, tuning or other benchmark drew these scenes
TASKS = ("instances", "panoptic", "semantic", "depth")
RESULTS_FILE = RESULTS / "one_step.json"


def served(pipe, data: list, task: str, batch: int, **settings) -> tuple[list, float, float]:
    """(outputs, UNet calls per image, seconds per image) of `task` over the scenes."""
    calls = []
    hook = pipe.unet.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    gen, outs, start = torch.Generator().manual_seed(0), [], time.perf_counter()
    try:
        for k in range(0, len(data), batch):
            out = pipe([s.image for s in data[k:k + batch]], generator=gen, task=task, **settings)
            outs += list(zip(out.panoptic, out.segments_info, strict=True)) if task in ("instances", "panoptic") \
                else out[task]
    finally:
        hook.remove()
    return outs, sum(calls) / len(data), (time.perf_counter() - start) / len(data)


def score(task: str, data: list, outs: list) -> float:
    """Class-agnostic PQ (instances), class-aware PQ All (panoptic), mIoU (semantic), RMSE (depth)."""
    if task == "instances":
        ev = PanopticEvaluator([], class_agnostic=True)
        for s, (pred, segs) in zip(data, outs, strict=True):
            gt = void_segments(s.ids.astype(np.int64), s.segments, 0, crowd=True)
            ev.process(gt, segments_from_ids(gt), pred, segs)
        return 100 * ev.evaluate()["All"]["pq"]
    if task == "panoptic":
        ev = PanopticEvaluator(categories())
        for s, (pred, segs) in zip(data, outs, strict=True):
            ev.process(s.ids, s.segments, pred, segs)
        return 100 * ev.evaluate()["All"]["pq"]
    if task == "semantic":
        ev = SemanticEvaluator(NUM_CLASSES, 0)
        for s, pred in zip(data, outs, strict=True):
            ev.process(s.semantic, pred)
        return 100 * ev.evaluate()["miou"]
    ev = DepthEvaluator()
    for s, pred in zip(data, outs, strict=True):
        ev.process(s.depth, pred)
    return ev.evaluate()["rmse"]


def model_rows(name: str, data: list, batch: int, **settings) -> dict:
    pipe = bench_pipeline(name)
    rows = {}
    for task in TASKS:
        outs, calls, seconds = served(pipe, data, task, batch, **settings)
        rows[task] = {"score": score(task, data, outs), "unet_calls": calls, "s_per_image": seconds}
        print(name, settings, task, rows[task], flush=True)
    return rows


def predict_wall_time(model: str, images: Path, threads: int) -> float:
    """Seconds of a whole `ldmseg predict` (default task) over the folder, start-up included."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ldmseg", "predict", "--model", model, "--images", str(images),
                        "--out", out, "--threads", str(threads)], check=True, capture_output=True)
        return time.perf_counter() - start


def checkpoint_curve(points: list[str], data: list, batch: int) -> dict[int, dict[str, float]]:
    """Every task's score of each STEP=DIR exported checkpoint, served at its own (one-call) defaults."""
    curve = {}
    for point in points:
        step, directory = point.split("=", 1)
        curve[int(step)] = {task: row["score"] for task, row in model_rows(directory, data, batch).items()}
    return dict(sorted(curve.items()))


def id_ways(points: list[str], data: list, batch: int) -> dict[str, float]:
    """Instances PQ of each LABEL=DIR one-step model (served at its one-call defaults)."""
    found = {}
    for point in points:
        label, directory = point.split("=", 1)
        outs, _, _ = served(bench_pipeline(directory), data, "instances", batch)
        found[label] = score("instances", data, outs)
    return found


def camvid_rows(root: str, models: list[str], threads: int) -> dict:
    """CamVid val: each model ('LABEL=MODEL' or 'MODEL') at its serving defaults (mIoU at the labels' size, seconds
    per photo), and a whole `ldmseg predict` of the val photos."""
    from camvid import pipeline_scores, val_set

    data, rows = val_set(root), {}
    for entry in models:
        label, _, model = entry.rpartition("=")
        rows[label or model] = {**pipeline_scores(model, data, len(data.classes.names), None, None),
                                "predict_wall_s": predict_wall_time(model, Path(root) / "val", threads)}
    return {"rows": rows, "photos": len(data)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one-step", default="demo-one-step")
    ap.add_argument("--ensemble", default="demo")
    ap.add_argument("--num", type=int, default=100)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--curve", nargs="*", default=[], metavar="STEP=DIR",
                    help="exported checkpoints of the distillation run, scored for its curve")
    ap.add_argument("--curve-only", action="store_true",
                    help="add --curve / --camvid to the saved results; measure nothing else")
    ap.add_argument("--id-ways", nargs="*", default=[], metavar="LABEL=DIR",
                    help="one-step models trained alike but for how instance ids are targeted: instances PQ of each")
    ap.add_argument("--camvid", default=None, help="CamVid's folder (val/, valannot/): the CamVid val rows")
    ap.add_argument("--camvid-models", nargs="+", metavar="[LABEL=]MODEL",
                    default=["camvid-diffusion", "camvid"], help="the models of the CamVid rows")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.curve_only:
        res = json.loads(RESULTS_FILE.read_text())
        if args.curve:
            res["curve"] = checkpoint_curve(args.curve, scenes(res["seed"], res["num"], res["size"]), args.batch)
        if args.camvid:
            res["camvid"] = camvid_rows(args.camvid, args.camvid_models, args.threads)
        if args.id_ways:
            res["id_ways"] = id_ways(args.id_ways, scenes(res["seed"], res["num"], res["size"]), args.batch)
        args.one_step, args.ensemble = res["one_step_model"], res["ensemble_model"]
        save_results("one_step", res, "\n".join(table(res, args)))
        return
    size = bench_pipeline(args.one_step).config.default_processing_resolution
    data = scenes(SEED, args.num, size)
    res: dict = {"machine": machine(), "threads": args.threads, "num": args.num, "seed": SEED, "size": size,
                 "one_step_model": args.one_step, "ensemble_model": args.ensemble}
    res["one_step"] = model_rows(args.one_step, data, args.batch)
    res["ensemble"] = model_rows(args.ensemble, data, args.batch)
    res["ensemble_one_call"] = model_rows(args.ensemble, data, args.batch, ensemble_size=1, num_inference_steps=1)
    with tempfile.TemporaryDirectory() as folder:
        for i, s in enumerate(data):
            write_png(Path(folder) / f"{i:04d}.png", s.image)
        res["predict_wall_s"] = {m: predict_wall_time(m, Path(folder), args.threads)
                                 for m in (args.ensemble, args.one_step)}
    if args.curve:
        res["curve"] = checkpoint_curve(args.curve, data, args.batch)
    if args.camvid:
        res["camvid"] = camvid_rows(args.camvid, args.camvid_models, args.threads)
    save_results("one_step", res, "\n".join(table(res, args)))
    print("\n".join(table(res, args)))


def table(res: dict, args: argparse.Namespace) -> list[str]:
    names = {"instances": "instances, class-agnostic PQ", "panoptic": "panoptic, class-aware PQ",
             "semantic": "semantic mIoU", "depth": "depth RMSE (lower is better)"}
    one, ens, single = res["one_step"], res["ensemble"], res["ensemble_one_call"]
    lines = ["## One-step models", "",
             f"`{args.one_step}` (one-step) against `{args.ensemble}` (served multi-step ensemble) on {res['num']} "
             f"fresh synthetic scenes ({res['size']}x{res['size']}, seed {res['seed']}), {res['threads']} thread(s); "
             f"{res['machine']}. Calls: UNet calls per image. `bench/one_step.py`, `bench/results/one_step.json`.", "",
             "| task | served ensemble | its 1 call | one-step | calls (ensemble / one-step) | s per image "
             "(ensemble / one-step) |", "|---|---|---|---|---|---|"]
    for task in TASKS:
        digits = 3 if task == "depth" else 1
        lines.append(f"| {names[task]} | {ens[task]['score']:.{digits}f} | {single[task]['score']:.{digits}f} | "
                     f"{one[task]['score']:.{digits}f} | {ens[task]['unet_calls']:.0f} / {one[task]['unet_calls']:.0f}"
                     f" | {ens[task]['s_per_image']:.3f} / {one[task]['s_per_image']:.3f} |")
    wall = res["predict_wall_s"]
    lines += ["", "Whole `ldmseg predict` (default task, start-up included) over the same scenes: "
              + ", ".join(f"`{m}` {s:.1f} s" for m, s in wall.items()) + "."]
    camvid = res.get("camvid")
    if camvid:
        lines += ["", f"CamVid val ({camvid['photos']} photos, 11 classes, at the labels' 480x360): the diffusion "
                  "model and its one-step fine-tunes (`ldmseg distill`, 58 min on one thread each); whole "
                  "`ldmseg predict` of the photos, start-up included:", "",
                  "| model | mIoU | pixel acc. | steps x samples | s per photo | whole predict, s |",
                  "|---|---|---|---|---|---|"]
        for model, row in camvid["rows"].items():
            lines.append(f"| {model} | {row['miou']:.1f} | {row['pixel_accuracy']:.1f} | {row['steps']} x "
                         f"{row['ensemble']} | {row['seconds_per_image']:.3f} | {row['predict_wall_s']:.1f} |")
    ways = res.get("id_ways")
    if ways:
        lines += ["", "How the instance ids are targeted, one-step from `demo` on instances alone (the same run "
                  "otherwise: batch 16, lr 1e-4, one thread each, side by side); instances PQ, one call:", "",
                  "| ids | " + " | ".join(ways) + " |", "|---" * (len(ways) + 1) + "|",
                  "| PQ | " + " | ".join(f"{v:.1f}" for v in ways.values()) + " |"]
    curve = {int(k): v for k, v in res.get("curve", {}).items()}
    if curve:
        lines += ["", "The distillation run (`ldmseg distill --model demo`, 1 thread) by step, exported checkpoints "
                  "on the same scenes, one call per task (two for panoptic):", "",
                  "| step | " + " | ".join(names[t] for t in TASKS) + " |", "|---" * (len(TASKS) + 1) + "|"]
        for step, scores in sorted(curve.items()):
            lines.append(f"| {step} | " + " | ".join(f"{scores[t]:.{3 if t == 'depth' else 1}f}" for t in TASKS)
                         + " |")
    return lines


if __name__ == "__main__":
    main()
