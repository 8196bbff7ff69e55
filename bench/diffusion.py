"""Stage-2 benchmark on held-out synthetic scenes: PQ of the pipeline vs sampler and steps, the
non-learned baseline on the same scenes, sampling speed, and the training curve.

    python bench/diffusion.py [--model demo|DIR] [--num 500] [--run runs/demo-ldmseg]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import ROOT, machine, save_results

from ldmseg.baseline import colour_components
from ldmseg.data.datasets import SampleConfig, SyntheticDataset
from ldmseg.data.synthetic import SceneConfig
from ldmseg.predict import load_pipeline
from ldmseg.training.autoencoder import VAL_SEED_OFFSET
from ldmseg.training.diffusion import sampled_pq
from ldmseg.training.validation import agnostic_pq, item_image

BENCH_SEED = 4242 + VAL_SEED_OFFSET
STEPS = (1, 2, 4, 10, 20, 50)
SAMPLERS = (("ddim", "leading"), ("ddim", "trailing"), ("dpm++", "trailing"))


def baseline_pq(ds) -> dict:
    return agnostic_pq(ds, lambda items: [colour_components(item_image(it)) for it in items])


def speed(pipe, ds, steps: int, batch: int) -> float:
    images = [ds[i]["image"] for i in range(batch)]
    pipe(images, num_inference_steps=steps)
    t = time.perf_counter()
    pipe(images, num_inference_steps=steps)
    return batch / (time.perf_counter() - t)


def plot(results: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, points in results.items():
        ax.plot(list(points), list(points.values()), marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("sampling steps")
    ax.set_ylabel("class-agnostic PQ")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="demo")
    ap.add_argument("--num", type=int, default=500)
    ap.add_argument("--run", default="runs/demo-ldmseg")
    args = ap.parse_args()
    torch.set_num_threads(2)
    pipe = load_pipeline(args.model)
    size = pipe.config.default_processing_resolution
    ds = SyntheticDataset(SceneConfig.preset("default", size),
                          SampleConfig(size=size, num_ids=pipe.mask_autoencoder.num_ids, crowd_to_void=True),
                          seed=BENCH_SEED, length=args.num)
    res: dict = {"machine": machine(), "model": args.model, "num": args.num, "size": size}
    res["baseline"] = baseline_pq(ds)
    print("baseline", res["baseline"], flush=True)
    curves: dict = {}
    for name, spacing in SAMPLERS:
        pipe.use_sampler(name, spacing)
        label = f"{name} {spacing}"
        curves[label] = {}
        for steps in STEPS:
            r = sampled_pq(pipe, ds, steps, batch_size=16)
            curves[label][steps] = r["pq"]
            res[f"{label}/{steps}"] = r
            print(label, steps, r, flush=True)
    pipe.use_sampler("ddim", "trailing")
    res["images_per_s"] = {f"{s} steps, batch {b}": speed(pipe, ds, s, b) for s in (4, 50) for b in (1, 8)}
    plot(curves, ROOT / "docs" / "figures" / "pq_vs_steps.png")
    lines = ["## Stage 2: segmentation by sampling", "",
             f"Model `{args.model}`, {args.num} held-out synthetic scenes ({size}x{size}, `default` preset), "
             f"class-agnostic PQ. {machine()}.", "",
             f"Non-learned baseline (colour quantisation + connected components): PQ {res['baseline']['pq']:.1f} "
             f"(SQ {res['baseline']['sq']:.1f}, RQ {res['baseline']['rq']:.1f}).", "",
             "| sampler | " + " | ".join(f"{s} steps" for s in STEPS) + " |", "|---" * (len(STEPS) + 1) + "|"]
    for label, pts in curves.items():
        lines.append(f"| {label} | " + " | ".join(f"{pts[s]:.1f}" for s in STEPS) + " |")
    lines += ["", "![PQ vs steps](figures/pq_vs_steps.png)", "", "Speed (DDIM trailing, CPU):", ""]
    lines += [f"- {k}: {v:.2f} images/s" for k, v in res["images_per_s"].items()]
    save_results("diffusion", res, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
