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

import torch

from ldmseg.commands.predict import load_pipeline
from ldmseg.data.datasets import SampleConfig, SyntheticDataset
from ldmseg.data.formats import write_json
from ldmseg.data.synthetic import SceneConfig
from ldmseg.diffusion.postprocess import logits_to_panoptic, scaled_area
from ldmseg.metrics.panoptic import PanopticEvaluator, segments_from_ids
from ldmseg.pipeline import LDMSegPipeline
from ldmseg.training.autoencoder import VAL_SEED_OFFSET

TUNING_SEED = 7 + VAL_SEED_OFFSET
CANDIDATES = (0, 512, 1024, 2048, 4096, 8192)


@torch.no_grad()
def sampled_pq_by_min_core(pipe: LDMSegPipeline, dataset, cores: dict, steps: int | None = None,
                           batch_size: int = 16, seed: int = 0) -> dict:
    """Sample each item once and score the same logits under each id-pruning size (name -> px at 512^2):
    compares post-processings without the sampling noise of separate runs (one sample per item: an ensemble's
    choice depends on the post-processing). Returns name -> PQ x100."""
    evaluators = {name: PanopticEvaluator([], class_agnostic=True) for name in cores}
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
        out = pipe([it["image"] for it in items], num_inference_steps=steps, generator=gen, output_logits=True,
                   ensemble_size=1, task="instances")
        for item, logits in zip(items, out.logits, strict=True):
            gt = item["ids"].numpy()
            area = scaled_area(pipe.config.min_area_at_512, *gt.shape)
            for name, core in cores.items():
                (pred, segs), = logits_to_panoptic(logits[None], pipe.config.confidence_threshold, area,
                                                   scaled_area(core, *gt.shape))
                evaluators[name].process(gt, segments_from_ids(gt), pred, segs)
    return {name: 100 * ev.evaluate()["All"]["pq"] for name, ev in evaluators.items()}


def served_pq_by_min_core(pipe: LDMSegPipeline, dataset, cores: dict, batch_size: int = 16, seed: int = 0) -> dict:
    """PQ x100 of the pipeline as served (its default sampler, steps and ensemble) under each id-pruning size
    (name -> px at 512^2): one full run per candidate from the same generator seed, because an ensemble's
    member choice depends on the post-processing. The pipeline's own size is restored afterwards."""
    own, scores = pipe.config.min_core_at_512, {}
    try:
        for name, core in cores.items():
            pipe.register_to_config(min_core_at_512=float(core))
            ev, gen = PanopticEvaluator([], class_agnostic=True), torch.Generator().manual_seed(seed)
            for start in range(0, len(dataset), batch_size):
                items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
                out = pipe([it["image"] for it in items], generator=gen, task="instances")
                for item, pred, segs in zip(items, out.panoptic, out.segments_info, strict=True):
                    gt = item["ids"].numpy()
                    ev.process(gt, segments_from_ids(gt), pred, segs)
            scores[name] = 100 * ev.evaluate()["All"]["pq"]
    finally:
        pipe.register_to_config(min_core_at_512=own)
    return scores


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
