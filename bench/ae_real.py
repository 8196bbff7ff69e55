"""Mask AEs on real masks they never saw: the held-out split of the COCO train photos (`ldmseg data instances-split
... --val 37`, things only, crowd VOID), squashed to 512^2, next to held-out synthetic scenes at 512^2 (default
preset). Reconstruction PQ with the default post-processing (confidence 0.5, id pruning) and with plain argmax.

    python bench/ae_real.py --real runs/coco-split/val.json --ae demo runs/ae-real-synth/model runs/ae-real-mix/model
"""

from __future__ import annotations

import argparse

import torch
from common import machine, save_results

from ldmseg.commands.reconstruct import DEFAULT_MIN_CORE_AT_512, DEFAULT_THRESHOLD
from ldmseg.data.datasets import CocoInstancesDataset, SampleConfig, SyntheticDataset
from ldmseg.data.synthetic import SceneConfig
from ldmseg.models.loading import load_mask_autoencoder
from ldmseg.training.autoencoder import VAL_SEED_OFFSET, reconstruction_pq
from ldmseg.weights import resolve_model_path

SIZE = 512


def rows(ae, data) -> dict:
    core = round(DEFAULT_MIN_CORE_AT_512)
    default = reconstruction_pq(ae, data, batch_size=4, threshold=DEFAULT_THRESHOLD, min_core=core)
    argmax = reconstruction_pq(ae, data, batch_size=4)
    return {"default_pq": default["pq"], "argmax_pq": argmax["pq"]}


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", required=True, help="held-out COCO instances JSON (images/ beside it)")
    ap.add_argument("--ae", nargs="+", default=["demo"], help="mask AEs: 'demo' or directories")
    ap.add_argument("--synthetic", type=int, default=64, help="held-out synthetic scenes (default 64)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="ae_real", help="results file and docs/benchmarks.md section (default ae_real)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from pathlib import Path

    sample = SampleConfig(size=SIZE, num_ids=128, reassign=True, crowd_to_void=True)
    real = CocoInstancesDataset(Path(args.real).parent / "images", args.real, sample, seed=1)
    synthetic = SyntheticDataset(SceneConfig.preset("default", SIZE), sample, seed=4242 + VAL_SEED_OFFSET,
                                 length=args.synthetic)
    results = {"machine": machine(), "real": args.real, "real_images": len(real), "synthetic": args.synthetic,
               "rows": {}}
    for name in args.ae:
        ae = load_mask_autoencoder(resolve_model_path(name, "mask_autoencoder"))
        results["rows"][name] = {"real": rows(ae, real), "synthetic": rows(ae, synthetic)}
        print(name, results["rows"][name])
    save_results(args.name, results, table(results, args.name))


def table(r: dict, name: str = "ae_real") -> str:
    title = "## Mask AEs on real masks they never saw" + ("" if name == "ae_real" else f" ({name})")
    lines = [title, "",
             f"`bench/ae_real.py` ({r['machine']}): {r['real_images']} held-out COCO train photos' instance masks "
             f"(things only, crowd VOID, {r['real']}) and {r['synthetic']} held-out synthetic scenes (default "
             f"preset), both squashed to {SIZE}^2; class-agnostic recon PQ, default post-processing / argmax.", "",
             "| mask AE | real: default | real: argmax | synthetic: default | synthetic: argmax |",
             "|---|---|---|---|---|"]
    for name, row in r["rows"].items():
        re, sy = row["real"], row["synthetic"]
        cells = [re["default_pq"], re["argmax_pq"], sy["default_pq"], sy["argmax_pq"]]
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
