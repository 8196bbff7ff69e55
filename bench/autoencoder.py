"""Stage-1 benchmark: reconstruction PQ of a mask AE on held-out synthetic scenes, robustness to
latent noise, PQ vs training steps (from the run's TensorBoard log), size and throughput.

    python bench/autoencoder.py [--ae demo|DIR] [--run runs/demo-ae] [--num 500] [--size 256]
    python bench/autoencoder.py --process-size 512   # the same scenes squashed to 512^2 first (paper protocol)

With --process-size P != --size, each mask is resized (nearest) to P x P before encoding and decoded back to
its own size, as `ldmseg reconstruct --resolution P` does; that table goes into a section of its own.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import ROOT, curve_table, logged_curve, machine, new_plot, save_plot, save_results

from ldmseg.commands.reconstruct import DEFAULT_MIN_CORE_AT_512, DEFAULT_THRESHOLD
from ldmseg.data.datasets import SampleConfig, SyntheticDataset
from ldmseg.data.synthetic import SceneConfig
from ldmseg.models.loading import load_mask_autoencoder
from ldmseg.training.autoencoder import VAL_SEED_OFFSET, reconstruction_pq
from ldmseg.weights import resolve_model_path

BENCH_SEED = 777 + VAL_SEED_OFFSET  # held out: training scenes use seeds (0, i)


def plot_curve(curve: dict[int, float], seconds_per_step: float | None, path: Path) -> None:
    fig, ax = new_plot()
    ax.plot(list(curve), list(curve.values()), marker="o", label="held-out validation scenes, argmax")
    if seconds_per_step:
        sec = ax.secondary_xaxis("top", functions=(lambda s: s * seconds_per_step / 60,
                                                   lambda m: m * 60 / seconds_per_step))
        sec.set_xlabel("GPU minutes (H100)")
    save_plot(fig, ax, path, "training step", "recon PQ (class-agnostic)", legend_size=7)


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
    (0.0, DEFAULT_THRESHOLD, DEFAULT_MIN_CORE_AT_512, f"threshold {DEFAULT_THRESHOLD} + id pruning (default)"),
    (0.1, DEFAULT_THRESHOLD, DEFAULT_MIN_CORE_AT_512, "default post-processing, noise 0.1"),
    (0.3, DEFAULT_THRESHOLD, DEFAULT_MIN_CORE_AT_512, "default post-processing, noise 0.3"),
    (0.1, 0.0, 0.0, "argmax, noise 0.1"),
    (0.3, 0.0, 0.0, "argmax, noise 0.3"),
)


PROCESSED_SETTINGS = (SETTINGS[0], SETTINGS[2])  # encoding at 512^2 costs ~4x: argmax and the default only


def score_settings(ae: torch.nn.Module, size: int, num: int, process: int, res: dict) -> list[tuple]:
    """The settings rows on the benchmark scenes of both presets: (preset, label, PQ/SQ/RQ), also put in res."""
    table = []
    for preset in ("default", "dense"):
        ds = SyntheticDataset(SceneConfig.preset(preset, size), SampleConfig(size=size, num_ids=ae.num_ids),
                              seed=BENCH_SEED, length=num)
        items = [ds[i] for i in range(len(ds))]
        for noise, threshold, core_at_512, label in SETTINGS if process == size else PROCESSED_SETTINGS:
            gen = torch.Generator().manual_seed(0)
            core = int(round(core_at_512 * size**2 / 512**2))
            r = reconstruction_pq(ae, items, latent_noise=noise, generator=gen, threshold=threshold, min_core=core,
                                  process_size=process)
            res[f"{preset}/{label}"] = r
            table.append((preset, label, r))
            print(preset, label, r, flush=True)
    return table


def markdown_rows(table: list[tuple]) -> list[str]:
    return ["| scenes | decoding | PQ | SQ | RQ |", "|---|---|---|---|---|",
            *(f"| {preset} | {label} | {r['pq']:.1f} | {r['sq']:.1f} | {r['rq']:.1f} |" for preset, label, r in table)]


def processed_section(args: argparse.Namespace, process: int, table: list[tuple]) -> list[str]:
    size = f"{args.size}x{args.size}"
    shipped = " (the shipped one)" if args.ae == "demo" else ""
    title = "" if args.name == "autoencoder" else f", AE {args.ae.removeprefix('../')}"
    return [f"## Stage 1: reconstruction with the masks encoded at {process}x{process}{title}", "",
            f"The first {args.num} + {args.num} of these scenes at {size}, AE `{args.ae}`{shipped}, each "
            f"mask resized (nearest) to {process}x{process} before encoding, as `ldmseg reconstruct --resolution "
            f"{process}` does (the paper reconstructs at 512x512), and decoded straight back to {size}; "
            f"post-processing at {size} as above. The latent grid is {process // 8}x{process // 8} instead of "
            f"{args.size // 8}x{args.size // 8}: small segments span more latent cells. {machine()}.", "",
            *markdown_rows(table)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ae", default="demo")
    ap.add_argument("--num", type=int, default=500)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--log", default=None, help="console log of the AE's training run (validation lines)")
    ap.add_argument("--seconds-per-step", type=float, default=None)
    ap.add_argument("--process-size", type=int, default=None, help="encode the masks at this size (default: --size)")
    ap.add_argument("--name", default="autoencoder", help="results file / docs section (another AE: its own)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    ae = load_mask_autoencoder(resolve_model_path(args.ae, "mask_autoencoder"))
    params = sum(p.numel() for p in ae.parameters())
    process = args.process_size or args.size
    res: dict = {"machine": machine(), "ae": args.ae, "params": params, "num": args.num, "size": args.size,
                 "process_size": process}
    table = score_settings(ae, args.size, args.num, process, res)
    if process != args.size:
        name = args.name if args.name.endswith(f"_at_{process}") else f"{args.name}_at_{process}"
        save_results(name, res, "\n".join(processed_section(args, process, table)))
        return
    res["masks_per_s_512"] = throughput(ae, 512)
    res["masks_per_s_256"] = throughput(ae, 256)
    lines = ["## Stage 1: mask autoencoder reconstruction", "",
             f"AE `{args.ae}`: {params / 1e6:.2f} M parameters. {args.num} held-out synthetic scenes per preset at "
             f"{args.size}x{args.size}, class-agnostic PQ / SQ / RQ (panopticapi rules), ids freshly reassigned. "
             "Noise: Gaussian noise of k x the latent std added to the latents before decoding. Id pruning: ids "
             f"that are the confident argmax at fewer than {DEFAULT_MIN_CORE_AT_512:.0f} px at 512^2 (scaled; "
             "`ldmseg reconstruct`'s default, from scripts/tune_ae_postprocess.py) give their pixels to the best "
             f"surviving id. {machine()}.", "",
             *markdown_rows(table)]
    lines += ["", f"Throughput (encode + decode + argmax, batch 4, CPU): {res['masks_per_s_512']:.1f} masks/s at "
              f"512x512, {res['masks_per_s_256']:.1f} masks/s at 256x256. GPU: see GPU timings."]
    curve = logged_curve("ae_curve", args.log) if args.name == "autoencoder" else {}
    if curve:
        res["curve"] = curve
        plot_curve(curve, args.seconds_per_step, ROOT / "docs" / "figures" / "ae_pq_vs_steps.png")
        source = f"`{args.log}`" if args.log else "kept in bench/results/ae_curve.json"
        lines += ["", f"Validation recon PQ during the AE's training run ({source}; argmax, the "
                  "run's held-out validation scenes):", "", "![AE PQ vs steps](figures/ae_pq_vs_steps.png)", "",
                  *curve_table(curve)]
    if args.name != "autoencoder":
        lines[0] = f"## Stage 1: mask autoencoder reconstruction, `{args.ae}`"
    save_results(args.name, res, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
