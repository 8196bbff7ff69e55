"""Recon PQ of a training run's checkpoints (argmax decoding), appended to bench/results/ae_curve.json.

    python bench/ae_checkpoint_curve.py --run runs/demo-ae [--num 48]
The run's own TensorBoard validation uses the 0.5 confidence rule, which reads 0 while the AE is
still unsure; this records the argmax PQ that the curve in docs/benchmarks.md plots.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from common import RESULTS

from ldmseg.training import checkpoint
from ldmseg.training.autoencoder import VAL_SEED_OFFSET, build_autoencoder, mask_dataset, reconstruction_pq
from ldmseg.training.config import AutoencoderConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/demo-ae")
    ap.add_argument("--num", type=int, default=48)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from pathlib import Path

    run = Path(args.run)
    cfg = AutoencoderConfig.load(run / "config.json")
    path = RESULTS / "ae_curve.json"
    curve = json.loads(path.read_text()) if path.exists() else {}
    for ck in checkpoint.list_checkpoints(run / "checkpoints"):
        step = str(checkpoint.load_tree(ck, "state")["step"])
        if step in curve:
            continue
        ae = build_autoencoder(cfg)
        ae.load_state_dict(checkpoint.load_tree(ck, "model"))
        ae.eval()
        row = {"time": time.time()}
        for preset in ("dense", "default"):
            ds = mask_dataset("synthetic", cfg.val_size, 2**cfg.num_bits, cfg.seed + VAL_SEED_OFFSET, preset, False,
                              args.num)
            row[preset] = reconstruction_pq(ae, ds)["pq"]
        curve[step] = row
        print(step, row, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(sorted(curve.items(), key=lambda kv: int(kv[0]))), indent=2))


if __name__ == "__main__":
    main()
