"""Stage-1 benchmark: reconstruction PQ of a mask AE on held-out synthetic scenes, robustness to
latent noise, PQ vs training steps (from the run's TensorBoard log), size and throughput.

    python bench/autoencoder.py [--ae demo|DIR] [--run runs/demo-ae] [--num 500] [--size 256]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import ROOT, machine, save_results

from ldmseg.data.datasets import SampleConfig, SyntheticDataset
from ldmseg.data.synthetic import SceneConfig
from ldmseg.models.mask_autoencoder import load_mask_autoencoder
from ldmseg.training.autoencoder import VAL_SEED_OFFSET, reconstruction_pq
from ldmseg.weights import resolve_model_path

BENCH_SEED = 777 + VAL_SEED_OFFSET  # held out: training scenes use seeds (0, i)


def load_curve() -> dict[int, dict]:
    """Checkpoint PQs recorded by bench/ae_checkpoint_curve.py during training."""
    path = ROOT / "bench" / "results" / "ae_curve.json"
    return {int(k): v for k, v in json.loads(path.read_text()).items()} if path.exists() else {}


def plot_curve(curve: dict[int, dict], seconds_per_step: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for preset in ("default", "dense"):
        ax.plot(list(curve), [row[preset] for row in curve.values()], marker="o", label=f"{preset} scenes")
    ax.set_xlabel("training step (batch 16, 128x128)")
    ax.set_ylabel("recon PQ (class-agnostic)")
    ax.legend()
    ax.grid(alpha=0.3)
    if seconds_per_step:
        sec = ax.secondary_xaxis("top", functions=(lambda s: s * seconds_per_step / 60,
                                                   lambda m: m * 60 / seconds_per_step))
        sec.set_xlabel("CPU minutes (2 cores)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def throughput(ae: torch.nn.Module, size: int, batch: int = 4, repeats: int = 3) -> float:
    ids = torch.randint(0, ae.num_ids, (batch, size, size))
    with torch.no_grad():
        ae.decode(ae.encode_ids(ids), size=(size, size))
        t = time.perf_counter()
        for _ in range(repeats):
            ae.decode(ae.encode_ids(ids), size=(size, size)).argmax(1)
    return batch * repeats / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ae", default="demo")
    ap.add_argument("--num", type=int, default=500)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seconds-per-step", type=float, default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    ae = load_mask_autoencoder(resolve_model_path(args.ae, "mask_autoencoder"))
    params = sum(p.numel() for p in ae.parameters())
    res: dict = {"machine": machine(), "ae": args.ae, "params": params, "num": args.num, "size": args.size}
    table = []
    for preset in ("default", "dense"):
        ds = SyntheticDataset(SceneConfig.preset(preset, args.size), SampleConfig(size=args.size, num_ids=ae.num_ids),
                              seed=BENCH_SEED, length=args.num)
        settings = [(0.0, 0, 0.0), (0.0, 0, 0.5), (0.0, 16, 0.0), (0.1, 0, 0.0), (0.3, 0, 0.0)]
        for noise, min_area, threshold in settings:
            gen = torch.Generator().manual_seed(0)
            r = reconstruction_pq(ae, ds, min_area=min_area, latent_noise=noise, generator=gen, threshold=threshold)
            key = f"{preset}/noise{noise}/min_area{min_area}/threshold{threshold}"
            res[key] = r
            table.append((preset, noise, min_area, threshold, r))
            print(key, r, flush=True)
    res["masks_per_s_512"] = throughput(ae, 512)
    res["masks_per_s_256"] = throughput(ae, 256)
    lines = ["## Stage 1: mask autoencoder reconstruction", "",
             f"AE `{args.ae}`: {params / 1e6:.2f} M parameters. {args.num} held-out synthetic scenes at "
             f"{args.size}x{args.size}, class-agnostic PQ / SQ / RQ (panopticapi rules), ids freshly reassigned. "
             "Noise: Gaussian noise of k x the latent std added to the latents before decoding. "
             f"min area: segments smaller than this (px) become VOID. {machine()}.", "",
             "| scenes | latent noise | min area | confidence threshold | PQ | SQ | RQ |",
             "|---|---|---|---|---|---|---|"]
    for preset, noise, min_area, threshold, r in table:
        scores = f"{r['pq']:.1f} | {r['sq']:.1f} | {r['rq']:.1f}"
        lines.append(f"| {preset} | {noise} | {min_area} | {threshold} | {scores} |")
    lines += ["", f"Throughput (encode + decode + argmax, batch 4, CPU): {res['masks_per_s_512']:.1f} masks/s at "
              f"512x512, {res['masks_per_s_256']:.1f} masks/s at 256x256."]
    curve = load_curve()
    if curve:
        res["curve"] = curve
        plot_curve(curve, args.seconds_per_step, ROOT / "docs" / "figures" / "ae_pq_vs_steps.png")
        lines += ["", "Recon PQ of the training checkpoints (48 held-out scenes per preset at 128x128, argmax):", "",
                  "![AE PQ vs steps](figures/ae_pq_vs_steps.png)", "",
                  "| step | " + " | ".join(str(s) for s in curve) + " |",
                  "|---" * (len(curve) + 1) + "|"]
        for preset in ("default", "dense"):
            lines.append(f"| {preset} | " + " | ".join(f"{row[preset]:.1f}" for row in curve.values()) + " |")
    save_results("autoencoder", res, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
