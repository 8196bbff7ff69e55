"""How the semantic and depth outputs depend on sampling steps, ensemble size and how the ensemble is combined,
on scenes of a tuning seed (not bench/multitask.py's): the evidence behind the serving defaults.

    python bench/sampling_sweep.py [--model demo] [--num 64]

For each number of steps every scene is sampled K_MAX times once; ensembles of K <= K_MAX use the first K
samples. Semantic: per-pixel hard vote of the K label maps (the pipeline's rule), soft vote (argmax of the mean
class probabilities), or the decoded mean latent. Depth: per-pixel median (the pipeline's rule), mean, or the
decoded mean latent. Writes bench/results/sampling_sweep.json and the `sampling_sweep` section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import bench_pipeline, machine, save_results
from multitask import NUM_CLASSES, scenes

from ldmseg.data.images import to_processing_size
from ldmseg.diffusion.postprocess import semantic_from_logits, vote_counts
from ldmseg.metrics.depth import DepthEvaluator
from ldmseg.metrics.semantic import SemanticEvaluator
from ldmseg.models.layers import native_bf16
from ldmseg.training.autoencoder import VAL_SEED_OFFSET

TUNE_SEED = 6_007 + VAL_SEED_OFFSET  # tuning scenes: neither training, validation nor bench/multitask.py use it
STEPS = (1, 2, 4, 8)
ENSEMBLES = (1, 4, 8, 16)
K_MAX = max(ENSEMBLES)


def bf16(pipe) -> bool:
    """Whether the pipeline's default precision runs its networks in bf16 here."""
    p = pipe.config.default_precision
    return p == "bf16" or (p == "auto" and native_bf16(pipe.unet.device))


def sample_decoded(pipe, task: str, images: list, steps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """K_MAX samples per image of `task`: (decoded outputs [B, K_MAX, C, r, r], latents [B, K_MAX, c, h, w])."""
    res = pipe.config.default_processing_resolution
    batch = torch.stack([to_processing_size(im, res) for im in images])
    gen = torch.Generator().manual_seed(seed)
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16(pipe)):
        z_img = pipe.image_encoder.encode(batch).float().repeat_interleave(K_MAX, 0)
        z = pipe._sample(task, z_img, steps, gen, False).float()
        ae = pipe.semantic_autoencoder if task == "semantic" else pipe.depth_autoencoder
        out = ae.decode(z, size=(res, res)).float()
    b = len(images)
    return out.view(b, K_MAX, *out.shape[1:]), z.view(b, K_MAX, *z.shape[1:])


def decode_mean(pipe, task: str, z: torch.Tensor) -> torch.Tensor:
    """The task's AE decoding of the mean of each image's latents [B, K, c, h, w]."""
    res = pipe.config.default_processing_resolution
    ae = pipe.semantic_autoencoder if task == "semantic" else pipe.depth_autoencoder
    return ae.decode(z.mean(1), size=(res, res)).float()


def semantic_rules(pipe, logits: torch.Tensor, z: torch.Tensor, k: int) -> dict[str, np.ndarray]:
    """[B, r, r] class maps from the first k samples, per combination rule."""
    top = NUM_CLASSES - 1
    labels = semantic_from_logits(logits[:, :k].flatten(0, 1), top).view(logits.shape[0], k, *logits.shape[-2:])
    hard = []
    for per_image in labels:
        counts, present = vote_counts(per_image)
        hard.append(present[counts.argmax(0)])
    probs = logits[:, :k, 1:top + 1].softmax(2).mean(1)
    rules = {"hard vote": torch.stack(hard), "soft vote": probs.argmax(1) + 1}
    if k > 1:
        rules["mean latent"] = semantic_from_logits(decode_mean(pipe, "semantic", z[:, :k]), top)
    return {name: m.numpy() for name, m in rules.items()}


def depth_rules(pipe, depth: torch.Tensor, z: torch.Tensor, k: int) -> dict[str, np.ndarray]:
    """[B, r, r] depth maps from the first k samples, per combination rule."""
    d = depth[:, :k, 0].clamp(0, 1)
    rules = {"median": d.quantile(0.5, dim=1), "mean": d.mean(1)}
    if k > 1:
        rules["mean latent"] = decode_mean(pipe, "depth", z[:, :k])[:, 0].clamp(0, 1)
    return {name: m.numpy() for name, m in rules.items()}


def sweep(pipe, data: list, task: str, batch: int) -> list[dict]:
    """One row per (steps, K, rule): mIoU or RMSE over the scenes, and the sampling seconds per image."""
    rows = []
    for steps in STEPS:
        evs: dict = {}
        start = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(data), batch):
                chunk = data[i:i + batch]
                out, z = sample_decoded(pipe, task, [s.image for s in chunk], steps, seed=i)
                for k in ENSEMBLES:
                    rules = (semantic_rules if task == "semantic" else depth_rules)(pipe, out, z, k)
                    for name, maps in rules.items():
                        ev = evs.setdefault((k, name), SemanticEvaluator(NUM_CLASSES, 0) if task == "semantic"
                                            else DepthEvaluator())
                        for s, pred in zip(chunk, maps, strict=True):
                            ev.process(s.semantic if task == "semantic" else s.depth, pred)
        seconds = (time.perf_counter() - start) / len(data) / K_MAX
        for (k, name), ev in evs.items():
            r = ev.evaluate()
            score = 100 * r["miou"] if task == "semantic" else r["rmse"]
            rows.append({"task": task, "steps": steps, "ensemble": k, "rule": name, "score": score,
                         "s_per_sample": seconds})
            print(rows[-1], flush=True)
    return rows


def table(rows: list[dict], task: str, rules: list[str]) -> list[str]:
    """Markdown: one row per (steps, K), one column per rule."""
    metric = "mIoU" if task == "semantic" else "RMSE"
    fmt = "{:.1f}" if task == "semantic" else "{:.4f}"
    lines = [f"| {task}: steps | K | " + " | ".join(f"{metric}, {r}" for r in rules) + " |",
             "|---|---|" + "---|" * len(rules)]
    for steps in STEPS:
        for k in ENSEMBLES:
            got = {r["rule"]: r["score"] for r in rows if r["task"] == task and r["steps"] == steps
                   and r["ensemble"] == k}
            lines.append(f"| {steps} | {k} | " + " | ".join(fmt.format(got[r]) if r in got else "-"
                                                          for r in rules) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="demo")
    ap.add_argument("--num", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(2)
    pipe = bench_pipeline(args.model)
    size = pipe.config.default_processing_resolution
    data = scenes(TUNE_SEED, args.num, size)
    rows = sweep(pipe, data, "semantic", args.batch) + sweep(pipe, data, "depth", args.batch)
    res = {"machine": machine(), "model": args.model, "num": args.num, "size": size, "seed": TUNE_SEED,
           "sampler": pipe.scheduler.__class__.__name__, "rows": rows}
    lines = ["## Sampling steps, ensemble size and ensemble rule (semantic, depth)", "",
             f"Model `{args.model}`, {args.num} synthetic scenes of a tuning seed ({TUNE_SEED}; bench/multitask.py "
             f"scores on another), {size}x{size}, {res['sampler']}; each scene sampled {K_MAX} times per step count, "
             "an ensemble of K uses the first K samples. Semantic rules: hard vote = per-pixel majority of the K "
             "label maps (the pipeline's rule before this sweep), soft vote = argmax of the mean class "
             "probabilities, mean latent = the AE's decoding of the mean of the K latents. Depth rules: per-pixel "
             f"median, mean, or decoded mean latent. {machine()}. `python bench/sampling_sweep.py`.", "",
             *table(rows, "semantic", ["hard vote", "soft vote", "mean latent"]), "",
             *table(rows, "depth", ["median", "mean", "mean latent"])]
    save_results("sampling_sweep", res, "\n".join(lines))


if __name__ == "__main__":
    main()
