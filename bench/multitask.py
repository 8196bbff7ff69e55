"""Multi-task LDMSeg on fresh synthetic scenes: semantic mIoU, class-aware PQ (All / Things / Stuff),
depth RMSE / AbsRel / delta<1.25, class-agnostic PQ of the instances task, each beside a trivial baseline
(majority class; the training set's mean depth map) and the task's AE alone (its ceiling).

    python bench/multitask.py [--model demo] [--num 200] [--log runs/mt.log]

The scenes use a seed no training or tuning run has used (BENCH_SEED). Writes bench/results/multitask.json and
the `multitask` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import torch
from common import bench_pipeline, machine, save_results

from ldmseg.data.synthetic import SceneConfig, categories, generate_scene
from ldmseg.data.transforms import void_segments
from ldmseg.metrics.depth import DepthEvaluator
from ldmseg.metrics.panoptic import PanopticEvaluator, segments_from_ids
from ldmseg.metrics.semantic import SemanticEvaluator
from ldmseg.training.autoencoder import VAL_SEED_OFFSET

BENCH_SEED = 9_001 + VAL_SEED_OFFSET  # fresh: the multi-task training, validation and tuning never used it
TRAIN_SEED = 0  # training scenes: for the baselines' statistics only
NUM_CLASSES = len(categories()) + 1  # labels 0..12, 0 ignored


def scenes(seed: int, num: int, size: int) -> list:
    cfg = SceneConfig.preset("default", size)
    return [generate_scene([seed, i], cfg) for i in range(num)]


def baselines(size: int, num: int = 200) -> tuple[int, np.ndarray]:
    """The training scenes' most frequent class and mean depth map."""
    train = scenes(TRAIN_SEED, num, size)
    counts = np.bincount(np.concatenate([s.semantic.ravel() for s in train]), minlength=NUM_CLASSES)
    counts[0] = 0
    return int(counts.argmax()), np.mean([s.depth for s in train], 0)


def evaluate(pipe, data: list, batch: int, task: str, **kwargs) -> tuple[list, float]:
    """Outputs of `task` for every scene (pipeline `kwargs` passed on), and the seconds per image."""
    gen = torch.Generator().manual_seed(0)
    outs, start = [], time.perf_counter()
    for k in range(0, len(data), batch):
        chunk = data[k:k + batch]
        out = pipe([s.image for s in chunk], generator=gen, task=task, **kwargs)
        if task == "semantic":
            outs += out.semantic
        elif task == "depth":
            outs += out.depth
        else:
            outs += list(zip(out.panoptic, out.segments_info, strict=True))
    return outs, (time.perf_counter() - start) / len(data)


def task_score(task: str, data: list, outs: list) -> float:
    """PQ (instances), mIoU (semantic) or RMSE (depth) of the outputs."""
    if task == "instances":
        ev = PanopticEvaluator([], class_agnostic=True)
        for s, (pred, segs) in zip(data, outs, strict=True):
            gt = void_segments(s.ids.astype(np.int64), s.segments, 0, crowd=True)
            ev.process(gt, segments_from_ids(gt), pred, segs)
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


def instances(pipe, data: list, batch: int) -> tuple[float, float, float]:
    """Class-agnostic PQ of the instances task (serving defaults), seconds per image, and the t = 0 ceiling
    (bench/diffusion.py's one-step diagnostic: the AE's own reconstruction with the pipeline's post-processing,
    on 100 of bench/diffusion.py's scenes)."""
    from diffusion import BENCH_SEED as STAGE2_SEED
    from diffusion import one_step_pq

    from ldmseg.data.datasets import SampleConfig, SyntheticDataset

    inst, seconds = evaluate(pipe, data, batch, "instances")
    agnostic = PanopticEvaluator([], class_agnostic=True)
    for s, (pred, segs) in zip(data, inst, strict=True):
        gt = void_segments(s.ids.astype(np.int64), s.segments, 0, crowd=True)  # as bench/diffusion.py
        agnostic.process(gt, segments_from_ids(gt), pred, segs)
    size = pipe.config.default_processing_resolution
    ds = SyntheticDataset(SceneConfig.preset("default", size),
                          SampleConfig(size=size, num_ids=pipe.mask_autoencoder.num_ids, crowd_to_void=True),
                          seed=STAGE2_SEED, length=100)
    return 100 * agnostic.evaluate()["All"]["pq"], seconds, one_step_pq(pipe, ds, 0)


def ae_ceilings(pipe, data: list) -> dict:
    """The semantic and depth AEs alone: encode the GT, decode (mIoU / RMSE)."""
    from ldmseg.diffusion.postprocess import semantic_from_logits

    sem_ev, depth_ev = SemanticEvaluator(NUM_CLASSES, 0), DepthEvaluator()
    with torch.no_grad():
        for k in range(0, len(data), 16):
            chunk = data[k:k + 16]
            labels = torch.from_numpy(np.stack([s.semantic for s in chunk]).astype(np.int64))
            logits = pipe.semantic_autoencoder.decode(pipe.semantic_autoencoder.encode_ids(labels),
                                                      size=labels.shape[-2:])
            for s, pred in zip(chunk, semantic_from_logits(logits, NUM_CLASSES - 1).numpy(), strict=True):
                sem_ev.process(s.semantic, pred)
            depth = torch.from_numpy(np.stack([s.depth for s in chunk]))
            for s, pred in zip(chunk, pipe.depth_autoencoder.reconstruct(depth).numpy(), strict=True):
                depth_ev.process(s.depth, pred)
    return {"semantic_ae_miou": 100 * sem_ev.evaluate()["miou"], "depth_ae_rmse": depth_ev.evaluate()["rmse"]}


def curves_from_log(log: str) -> dict[str, dict[int, float]]:
    """Validation metrics per step from a training run's console log ('step N: pq X, ..., miou Y, ..., rmse Z')."""
    found: dict[str, dict[int, float]] = {"pq": {}, "miou": {}, "rmse": {}}
    for step, rest in re.findall(r"step (\d+): ([^\n\r]*)", Path(log).read_text()):
        for name in found:
            m = re.search(rf"\b{name} ([0-9.]+)", rest)
            if m:
                found[name][int(step)] = float(m.group(1))
    return found


def validation_curves(logs: list[str]) -> list[dict[str, dict[int, float]]]:
    """Each log's curves, parsed where the log is here, else the copy kept in bench/results/multitask.json (run
    directories are not committed, so a later session re-benchmarks with the earlier stretches' logs gone)."""
    kept_path = Path(__file__).parent / "results" / "multitask.json"
    kept = json.loads(kept_path.read_text()) if kept_path.exists() else {}
    by_log = dict(zip(kept.get("validation_logs", []), kept.get("validation_curves", []), strict=True))
    curves = []
    for log in logs:
        if Path(log).exists():
            curves.append(curves_from_log(log))
        elif log in by_log:
            curves.append({name: {int(k): v for k, v in c.items()} for name, c in by_log[log].items()})
        else:
            raise SystemExit(f"{log}: no such log, and no kept copy of its curves in {kept_path}")
    return curves


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="demo")
    ap.add_argument("--num", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--log", action="append", default=[],
                    help="console log of a multi-task training stretch of the model (repeat for several, in order; "
                         "one no longer here is read from the copy kept in the results JSON)")
    ap.add_argument("--previous", default=None, help="an earlier model to compare the instances task with")
    args = ap.parse_args()
    torch.set_num_threads(2)
    pipe = bench_pipeline(args.model)
    size = pipe.config.default_processing_resolution
    data = scenes(BENCH_SEED, args.num, size)
    majority, mean_depth = baselines(size)
    res: dict = {"machine": machine(), "model": args.model, "num": args.num, "size": size, "seed": BENCH_SEED,
                 "ensemble_size": pipe.config.default_ensemble_size,
                 "steps": pipe.config.default_num_inference_steps,
                 "task_steps": dict(pipe.config.task_num_inference_steps or {})}

    sem, res["semantic_s_per_image"] = evaluate(pipe, data, args.batch, "semantic")
    ev, base = SemanticEvaluator(NUM_CLASSES, 0), SemanticEvaluator(NUM_CLASSES, 0)
    for s, pred in zip(data, sem, strict=True):
        ev.process(s.semantic, pred)
        base.process(s.semantic, np.full_like(s.semantic, majority))
    r = ev.evaluate()
    res["semantic"] = {"miou": 100 * r["miou"], "pixel_accuracy": 100 * r["pixel_accuracy"],
                       "per_class_iou": {c["name"]: 100 * r["per_class_iou"][c["id"]] for c in categories()},
                       "majority_baseline_miou": 100 * base.evaluate()["miou"]}
    print("semantic", res["semantic"], flush=True)

    depth, res["depth_s_per_image"] = evaluate(pipe, data, args.batch, "depth")
    ev_d, base_d = DepthEvaluator(), DepthEvaluator()
    for s, pred in zip(data, depth, strict=True):
        ev_d.process(s.depth, pred)
        base_d.process(s.depth, mean_depth)
    res["depth"] = {**ev_d.evaluate(), "mean_map_baseline_rmse": base_d.evaluate()["rmse"]}
    print("depth", res["depth"], flush=True)

    pan, res["panoptic_s_per_image"] = evaluate(pipe, data, args.batch, "panoptic")
    aware = PanopticEvaluator(categories())
    for s, (pred, segs) in zip(data, pan, strict=True):
        aware.process(s.ids, s.segments, pred, segs)  # crowd regions scored by panopticapi's rules
    r = aware.evaluate()
    res["panoptic"] = {k: {m: 100 * r[k][m] for m in ("pq", "sq", "rq")} for k in ("All", "Things", "Stuff")}
    print("panoptic", res["panoptic"], flush=True)

    res["instances_pq"], res["instances_s_per_image"], res["instances_t0_ceiling"] = instances(pipe, data, args.batch)
    if args.previous:
        old = bench_pipeline(args.previous)
        res["previous"] = dict(zip(("instances_pq", "instances_s_per_image", "instances_t0_ceiling"),
                                   instances(old, data, args.batch), strict=True))
        print("previous model", res["previous"], flush=True)
    res.update(ae_ceilings(pipe, data))
    print("instances", res["instances_pq"], "ceilings", res["semantic_ae_miou"], res["depth_ae_rmse"], flush=True)
    if args.log:
        res["validation_logs"], res["validation_curves"] = args.log, validation_curves(args.log)

    p, s, d = res["panoptic"], res["semantic"], res["depth"]
    lines = ["## Multi-task: semantic, class-aware panoptic, depth", "",
             f"Model `{args.model}`, {args.num} fresh synthetic scenes (`default` preset, {size}x{size}, seed "
             f"{BENCH_SEED}, never used in training or tuning); the model's serving defaults (ensemble of "
             f"{res['ensemble_size']}, {res['steps']} steps"
             + "".join(f"; {task}: {n} step{'s' * (n > 1)}" for task, n in res["task_steps"].items())
             + f"). {machine()}.", "",
             "| task | metric | LDMSeg | trivial baseline | the task's AE alone |", "|---|---|---|---|---|",
             f"| semantic (12 classes, 0 ignored) | mIoU | {s['miou']:.1f} | {s['majority_baseline_miou']:.1f} "
             f"(majority class) | {res['semantic_ae_miou']:.1f} |",
             f"| class-aware panoptic | PQ All / Things / Stuff | {p['All']['pq']:.1f} / {p['Things']['pq']:.1f} / "
             f"{p['Stuff']['pq']:.1f} | | |",
             f"| depth | RMSE | {d['rmse']:.4f} | {d['mean_map_baseline_rmse']:.4f} (training mean map) | "
             f"{res['depth_ae_rmse']:.4f} |",
             f"| depth | AbsRel / delta<1.25 | {d['absrel']:.3f} / {100 * d['delta1']:.1f}% | | |",
             f"| instances (class-agnostic) | PQ | {res['instances_pq']:.1f} | | t = 0: "
             f"{res['instances_t0_ceiling']:.1f} |", "",
             f"Seconds per image (CPU): semantic {res['semantic_s_per_image']:.2f}, depth "
             f"{res['depth_s_per_image']:.2f}, panoptic {res['panoptic_s_per_image']:.2f} (instances + semantic), "
             f"instances {res['instances_s_per_image']:.2f}.", "",
             "Per-class IoU: " + ", ".join(f"{k} {v:.0f}" for k, v in s["per_class_iou"].items() if v == v) + "."]
    if args.previous:
        prev = res["previous"]
        lines += ["", f"The previous model (`{args.previous}`, with its own mask AE and serving defaults) on the same "
                  f"scenes: instances PQ {prev['instances_pq']:.1f} (this model: {res['instances_pq']:.1f}), t = 0 "
                  f"ceiling {prev['instances_t0_ceiling']:.1f} (this model: {res['instances_t0_ceiling']:.1f})."]
    for stretch, curves in enumerate(res.get("validation_curves", []), start=1):
        steps = sorted(set().union(*[c.keys() for c in curves.values()]))
        lines += ["", f"Validation during training stretch {stretch} (`{args.log[stretch - 1]}`; 48 held-out scenes of "
                  "that run's seed, one sample, 4 steps; each stretch continues from the previous one's weights):", "",
                  "| step | " + " | ".join(str(k) for k in steps) + " |", "|---" * (len(steps) + 1) + "|"]
        for name, label in (("pq", "instances PQ"), ("miou", "semantic mIoU"), ("rmse", "depth RMSE")):
            lines.append(f"| {label} | " + " | ".join(f"{curves[name].get(k, float('nan')):.3g}" for k in steps)
                         + " |")
    save_results("multitask", res, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
