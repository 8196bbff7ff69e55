"""Stage-1 benchmark: reconstruction PQ of a mask AE on held-out synthetic scenes, robustness to
latent noise, PQ vs training steps (from the run's TensorBoard log), size and throughput.

    python bench/autoencoder.py [--ae demo|DIR] [--run runs/demo-ae] [--num 500] [--size 256]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import ROOT, curve_table, logged_curve, machine, save_results

from ldmseg.data.datasets import SampleConfig, SyntheticDataset
from ldmseg.data.synthetic import SceneConfig
from ldmseg.models.mask_autoencoder import load_mask_autoencoder
from ldmseg.training.autoencoder import VAL_SEED_OFFSET, reconstruction_pq
from ldmseg.weights import resolve_model_path

BENCH_SEED = 777 + VAL_SEED_OFFSET  # held out: training scenes use seeds (0, i)


def plot_curve(curve: dict[int, float], seconds_per_step: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(list(curve), list(curve.values()), marker="o", label="64 held-out scenes (default+dense), argmax")
    ax.set_xlabel("training step (batch 16, 256x256)")
    ax.set_ylabel("recon PQ (class-agnostic)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    if seconds_per_step:
        sec = ax.secondary_xaxis("top", functions=(lambda s: s * seconds_per_step / 60,
                                                   lambda m: m * 60 / seconds_per_step))
        sec.set_xlabel("GPU minutes (H100)")
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


SETTINGS = (  # (latent noise x std, confidence threshold, id-pruning core at 512^2, label)
    (0.0, 0.0, 0.0, "argmax"),
    (0.0, 0.5, 0.0, "threshold 0.5 (research code)"),
    (0.0, 0.5, 512.0, "threshold 0.5 + id pruning (default)"),
    (0.1, 0.5, 512.0, "default post-processing, noise 0.1"),
    (0.3, 0.5, 512.0, "default post-processing, noise 0.3"),
    (0.1, 0.0, 0.0, "argmax, noise 0.1"),
    (0.3, 0.0, 0.0, "argmax, noise 0.3"),
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ae", default="demo")
    ap.add_argument("--num", type=int, default=500)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--log", default=None, help="console log of the AE's training run (validation lines)")
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
        items = [ds[i] for i in range(len(ds))]
        for noise, threshold, core_at_512, label in SETTINGS:
            gen = torch.Generator().manual_seed(0)
            core = int(round(core_at_512 * args.size**2 / 512**2))
            r = reconstruction_pq(ae, items, latent_noise=noise, generator=gen, threshold=threshold, min_core=core)
            res[f"{preset}/{label}"] = r
            table.append((preset, label, r))
            print(preset, label, r, flush=True)
    res["masks_per_s_512"] = throughput(ae, 512)
    res["masks_per_s_256"] = throughput(ae, 256)
    lines = ["## Stage 1: mask autoencoder reconstruction", "",
             f"AE `{args.ae}`: {params / 1e6:.2f} M parameters. {args.num} held-out synthetic scenes per preset at "
             f"{args.size}x{args.size}, class-agnostic PQ / SQ / RQ (panopticapi rules), ids freshly reassigned. "
             "Noise: Gaussian noise of k x the latent std added to the latents before decoding. Id pruning: ids "
             "that are the confident argmax at fewer than 512 px at 512^2 (scaled) give their pixels to the best "
             f"surviving id. {machine()}.", "",
             "| scenes | decoding | PQ | SQ | RQ |", "|---|---|---|---|---|"]
    for preset, label, r in table:
        lines.append(f"| {preset} | {label} | {r['pq']:.1f} | {r['sq']:.1f} | {r['rq']:.1f} |")
    lines += ["", f"Throughput (encode + decode + argmax, batch 4, CPU): {res['masks_per_s_512']:.1f} masks/s at "
              f"512x512, {res['masks_per_s_256']:.1f} masks/s at 256x256. GPU: see GPU timings."]
    curve = logged_curve("ae_curve", args.log)
    if curve:
        res["curve"] = curve
        plot_curve(curve, args.seconds_per_step, ROOT / "docs" / "figures" / "ae_pq_vs_steps.png")
        lines += ["", "Validation recon PQ during training (argmax, 64 held-out scenes alternating default / dense, "
                  "256x256):", "", "![AE PQ vs steps](figures/ae_pq_vs_steps.png)", "", *curve_table(curve)]
    save_results("autoencoder", res, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
