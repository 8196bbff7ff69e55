"""Stage-2 benchmark on held-out synthetic scenes: PQ of the pipeline vs sampler and steps, the
non-learned baseline on the same scenes, sampling speed, and the training curve.

    python bench/diffusion.py [--model demo|DIR] [--num 500] [--log TRAINING_CONSOLE_LOG]
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
from common import ROOT, curve_table, logged_curve, machine, new_plot, save_curve, save_plot, save_results

from ldmseg.commands.baseline import colour_components
from ldmseg.commands.predict import load_pipeline
from ldmseg.data.datasets import SampleConfig, SyntheticDataset
from ldmseg.data.synthetic import SceneConfig
from ldmseg.diffusion.objective import denoiser_input
from ldmseg.diffusion.postprocess import logits_to_panoptic, scaled_area
from ldmseg.diffusion.schedule import predicted_x0
from ldmseg.training.autoencoder import VAL_SEED_OFFSET
from ldmseg.training.validation import agnostic_pq, item_image, sampled_pq

BENCH_SEED = 4242 + VAL_SEED_OFFSET
STEPS = (1, 2, 4, 10, 20, 50)
SAMPLERS = (("ddim", "leading"), ("ddim", "trailing"), ("dpm++", "trailing"))
ENSEMBLES, ENSEMBLE_STEPS = (1, 2, 4, 8), 4  # DPM-Solver++ trailing


def baseline_pq(ds) -> dict:
    return agnostic_pq(ds, lambda items: [colour_components(item_image(it)) for it in items])


def speed(pipe, ds, steps: int, batch: int, ensemble_size: int = 1) -> float:
    images = [ds[i]["image"] for i in range(batch)]
    pipe(images, num_inference_steps=steps, ensemble_size=ensemble_size)
    t = time.perf_counter()
    pipe(images, num_inference_steps=steps, ensemble_size=ensemble_size)
    return batch / (time.perf_counter() - t)


def ensembles(pipe, ds, res: dict) -> list[str]:
    """PQ and speed of K-sample ensembles (the pipeline's ensemble_size); K = 1 is the sampler table's."""
    pipe.use_sampler("dpm++", "trailing")
    for k in ENSEMBLES:
        r = res[f"dpm++ trailing/{ENSEMBLE_STEPS}"] if k == 1 else sampled_pq(pipe, ds, ENSEMBLE_STEPS, 16,
                                                                              ensemble_size=k)
        res[f"ensemble/{k}"] = {**r, "images_per_s": speed(pipe, ds, ENSEMBLE_STEPS, 8, k)}
        print("ensemble", k, res[f"ensemble/{k}"], flush=True)
    return ["", f"Ensembles (DPM-Solver++ trailing, {ENSEMBLE_STEPS} steps): every image sampled K times, the sample "
            "with the highest mean PQ against the others kept, minus its segments that fewer than a quarter of the "
            "others find again (`ensemble_size`, `--ensemble-size`; the demo model "
            f"serves with K = {pipe.config.default_ensemble_size}):", "",
            "| K | " + " | ".join(str(k) for k in ENSEMBLES) + " |", "|---" * (len(ENSEMBLES) + 1) + "|",
            "| PQ | " + " | ".join(f"{res[f'ensemble/{k}']['pq']:.1f}" for k in ENSEMBLES) + " |",
            "| SQ / RQ | " + " | ".join(f"{res[f'ensemble/{k}']['sq']:.1f} / {res[f'ensemble/{k}']['rq']:.1f}"
                                       for k in ENSEMBLES) + " |",
            "| images/s (batch 8, CPU) | " + " | ".join(f"{res[f'ensemble/{k}']['images_per_s']:.2f}"
                                                       for k in ENSEMBLES) + " |"]


def plot(results: dict, path) -> None:
    fig, ax = new_plot()
    for name, points in results.items():
        ax.plot(list(points), list(points.values()), marker="o", label=name)
    ax.set_xscale("log")
    save_plot(fig, ax, path, "sampling steps", "class-agnostic PQ")


NOISE_LEVELS = (0, 50, 200, 500, 800, 999)


@torch.no_grad()
def one_step_pq(pipe, ds, t: int, num: int = 100) -> float:
    """Diagnostic: PQ of the decoded one-step x0 estimate from true latents noised to timestep t
    (t = 0 decodes the clean latents: the AE's own ceiling at this resolution)."""
    sched, ae, scale = pipe.scheduler, pipe.mask_autoencoder, pipe.task_scale("instances")
    gen = torch.Generator().manual_seed(t)
    size = pipe.config.default_processing_resolution

    def predict(items: list[dict]) -> list:
        ids = torch.stack([it["ids"] for it in items])
        z0 = ae.encode_ids(ids) * scale
        if t > 0:
            tt = torch.full((len(items),), t)
            zt = sched.add_noise(z0, torch.randn(z0.shape, generator=gen), tt)
            z_img = pipe.image_encoder.encode(torch.stack([it["image"] for it in items]))
            out = pipe._denoise("instances")(denoiser_input(zt, z_img, None, pipe.config.self_condition), tt)
            z0 = predicted_x0(out, zt, tt, sched.alphas_cumprod, sched.config.prediction_type)
        logits = ae.decode(z0 / scale, size=(size, size))
        core = scaled_area(pipe.config.min_core_at_512, size, size)
        return logits_to_panoptic(logits, pipe.config.confidence_threshold, 0, core)

    return agnostic_pq([ds[i] for i in range(min(num, len(ds)))], predict)["pq"]


def fine_tuning_curves(logs: list[str], starts: list[float]) -> list[dict[int, float]]:
    """Validation curves of the fine-tuning runs (kept as bench/results/diffusion_ft{i}_curve.json)."""
    curves = []
    for i in itertools.count(1):
        curve = logged_curve(f"diffusion_ft{i}_curve", logs[i - 1] if i <= len(logs) else None)
        if not curve:
            break
        if i <= len(starts):
            curve = {0: starts[i - 1], **{k: v for k, v in curve.items() if k != 0}}
            save_curve(f"diffusion_ft{i}_curve", curve)
        curves.append(curve)
    return curves


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="demo")
    ap.add_argument("--num", type=int, default=500)
    ap.add_argument("--log", default=None, help="console log of the model's training run (validation lines)")
    ap.add_argument("--ft-log", nargs="*", default=[], help="console logs of its fine-tuning runs, in order")
    ap.add_argument("--ft-start", nargs="*", type=float, default=[],
                    help="each fine-tuning's step-0 validation PQ (scripts/val_pq.py), in the same order")
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
    ensemble_lines = ensembles(pipe, ds, res)
    pipe.use_sampler("ddim", "trailing")
    res["one_step_x0_pq"] = {t: one_step_pq(pipe, ds, t) for t in NOISE_LEVELS}
    print("one-step x0 PQ", res["one_step_x0_pq"], flush=True)
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
    lines += ensemble_lines
    lines += ["", "Diagnostic, one-step x0 estimate from the true latents noised to timestep t (100 scenes; t = 0 is "
              "the mask AE's own reconstruction at this resolution):", "",
              "| t | " + " | ".join(str(t) for t in NOISE_LEVELS) + " |", "|---" * (len(NOISE_LEVELS) + 1) + "|",
              "| PQ | " + " | ".join(f"{res['one_step_x0_pq'][t]:.1f}" for t in NOISE_LEVELS) + " |"]
    curve = logged_curve("diffusion_curve", args.log)
    if curve:
        res["training_curve"] = curve
        lines += ["", "Validation PQ logged during training (64 held-out scenes, DDIM trailing 10 steps, "
                  "the post-processing of that time: threshold 0.5 + min area, no id pruning):", "",
                  *curve_table(curve)]
    ft_curves = fine_tuning_curves(args.ft_log, args.ft_start)
    if ft_curves:
        res["fine_tuning_curves"] = ft_curves
        lines += ["", "Then fine-tuned on the CPU, each time on new scenes (batch 32, lr 2e-4 cosine; steps counted "
                  "from the start of each fine-tuning; validation on 64 held-out scenes of the run's own seed, DDIM "
                  "trailing 10 steps, with the id pruning the model had then: 512 px at 512^2 in the first, 4096 "
                  "in the second, 2048 in the third, 4096 in the fourth, 2048 in the fifth; the third adds "
                  "self-conditioning, probability 0.5, which the later ones keep; the fourth and fifth train under "
                  "bf16 autocast; step 0 measured by scripts/val_pq.py; the fourth's intermediate points were lost "
                  "with the machine that ran it, its last point is scripts/val_pq.py on the model it saved):"]
        for i, curve in enumerate(ft_curves, 1):
            lines += ["", f"Fine-tuning {i}:", "", *curve_table(curve)]
    save_results("diffusion", res, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
