"""Choose a pipeline's id-pruning size (config `min_core_at_512`) on validation scenes.

    python scripts/tune_min_core.py --pipeline runs/demo-ldmseg/model [--num 64] [--write] [--single-sample]

Scores the pipeline as served (its default sampler, steps and ensemble size) once per candidate. An ensemble
already drops many fragments, so it wants a lower floor than single samples do (the slot-head demo: 4096 px with
one sample, lower with the served ensemble of 8). --single-sample is the fast proxy: each scene sampled once, every
candidate scoring the same logits. The scenes use their own seeds: neither the training scenes, nor the training
run's validation scenes, nor the benchmarks' (bench/diffusion.py, bench/multitask.py).
With --write the best value goes into the pipeline's model_index.json (written atomically).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ldmseg.commands.predict import load_pipeline
from ldmseg.data.datasets import SampleConfig, SyntheticDataset
from ldmseg.data.formats import write_json
from ldmseg.data.synthetic import SceneConfig
from ldmseg.training.autoencoder import VAL_SEED_OFFSET
from ldmseg.training.diffusion import sampled_pq_by_min_core, served_pq_by_min_core

TUNING_SEED = 7 + VAL_SEED_OFFSET
CANDIDATES = (0, 512, 1024, 2048, 4096, 8192)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipeline", required=True)
    ap.add_argument("--num", type=int, default=64)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--single-sample", action="store_true", help="one sample per scene, all candidates on its logits")
    args = ap.parse_args()
    pipe = load_pipeline(args.pipeline)
    size = pipe.config.default_processing_resolution
    ds = SyntheticDataset(SceneConfig.preset("default", size),
                          SampleConfig(size=size, num_ids=pipe.mask_autoencoder.num_ids), seed=TUNING_SEED,
                          length=args.num)
    tune = sampled_pq_by_min_core if args.single_sample else served_pq_by_min_core
    scores = tune(pipe, ds, {c: c for c in CANDIDATES})
    for c, pq in scores.items():
        print(f"min_core_at_512 {c:5d}: PQ {pq:.1f}")
    best = max(scores, key=scores.get)
    print(f"best: {best}")
    if args.write:
        index_path = Path(args.pipeline) / "model_index.json"
        index = json.loads(index_path.read_text())
        index["min_core_at_512"] = float(best)
        write_json(index_path, index, indent=2)


if __name__ == "__main__":
    main()
