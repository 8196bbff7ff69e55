"""Validation PQ of a pipeline on the validation scenes a training run with --seed S uses.

    python scripts/val_pq.py --pipeline demo --seed 2 [--num 64] [--steps 10]

Gives a fine-tuning run's step-0 value (the loop validates only after training steps): the
model it starts from, on the same scenes, sampler and post-processing as the run's validation.
"""

from __future__ import annotations

import argparse

from ldmseg.commands.predict import load_pipeline
from ldmseg.training.autoencoder import VAL_SEED_OFFSET
from ldmseg.training.config import DiffusionConfig
from ldmseg.training.diffusion import image_dataset
from ldmseg.training.validation import sampled_pq


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipeline", default="demo")
    ap.add_argument("--seed", type=int, default=0, help="the training run's --seed")
    ap.add_argument("--num", type=int, default=64, help="the training run's --val-num")
    ap.add_argument("--steps", type=int, default=10, help="the training run's --val-steps")
    args = ap.parse_args()
    pipe = load_pipeline(args.pipeline)
    size = pipe.config.default_processing_resolution
    cfg = DiffusionConfig(seed=args.seed, size=size, val_num=args.num)
    ds = image_dataset("synthetic", cfg, pipe.mask_autoencoder.num_ids, args.seed + VAL_SEED_OFFSET, train=False,
                       length=args.num)
    res = sampled_pq(pipe, ds, args.steps)
    print(f"PQ {res['pq']:.2f} (SQ {res['sq']:.2f}, RQ {res['rq']:.2f}) on {args.num} validation scenes of seed "
          f"{args.seed}, {args.steps} steps, id pruning at {pipe.config.min_core_at_512:.0f} px at 512^2")


if __name__ == "__main__":
    main()
