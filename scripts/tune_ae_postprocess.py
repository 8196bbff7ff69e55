"""Choose a mask AE's reconstruction post-processing (`ldmseg reconstruct`'s threshold and id-pruning defaults)
on tuning scenes.

    python scripts/tune_ae_postprocess.py [--ae demo] [--num 48] [--size 256] [--process-size 512]
        [--real runs/coco-split/train.json --real-num 64]

Each mask is encoded and decoded once (at --process-size, as `ldmseg reconstruct --resolution` does) and every
candidate post-processing scores the same decoded distributions. The scenes (default and dense presets) use a
seed of their own: neither the AE's training scenes, nor its validation scenes, nor bench/autoencoder.py's.
With --real (a COCO instances JSON with images/ beside it: the training split, never the held-out one that
bench/ae_real.py scores) its first --real-num photos' masks at 512^2 count as a third set beside the presets.
Prints PQ per candidate and set, and the best by the sets' mean.
"""

from __future__ import annotations

import argparse
from itertools import product
from pathlib import Path

import torch
from torch.utils.data import Subset

from ldmseg.data.datasets import CocoInstancesDataset, SampleConfig, SyntheticDataset
from ldmseg.data.synthetic import SceneConfig
from ldmseg.data.transforms import resize_labels
from ldmseg.diffusion.postprocess import logits_to_panoptic, scaled_area
from ldmseg.metrics.panoptic import PanopticEvaluator, segments_from_ids
from ldmseg.models.loading import load_mask_autoencoder
from ldmseg.training.autoencoder import VAL_SEED_OFFSET
from ldmseg.weights import resolve_model_path

TUNING_SEED = 31 + VAL_SEED_OFFSET
THRESHOLDS = (0.0, 0.3, 0.4, 0.5)
CORES_AT_512 = (0, 16, 32, 64, 128, 256, 512)


@torch.no_grad()
def pq_by_postprocess(ae, dataset, process: int, batch_size: int = 8) -> dict[tuple[float, int], float]:
    """(threshold, pruning core at 512^2) -> PQ x100 on `dataset`, all from one decode per mask."""
    candidates = list(product(THRESHOLDS, CORES_AT_512))
    evaluators = {c: PanopticEvaluator([], class_agnostic=True) for c in candidates}
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
        ids = torch.stack([it["ids"] for it in items])
        size = tuple(ids.shape[-2:])
        logits = ae.decode(ae.encode_ids(torch.from_numpy(resize_labels(ids.numpy(), (process, process)))), size=size)
        for item, one in zip(items, logits, strict=True):
            gt = item["ids"].numpy()
            for threshold, core in candidates:
                (pred, segs), = logits_to_panoptic(one[None], threshold, 0, scaled_area(core, *gt.shape))
                evaluators[threshold, core].process(gt, segments_from_ids(gt), pred, segs)
    return {c: 100 * ev.evaluate()["All"]["pq"] for c, ev in evaluators.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ae", default="demo")
    ap.add_argument("--num", type=int, default=48)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--process-size", type=int, default=512)
    ap.add_argument("--real", default=None, help="COCO instances JSON of real masks to tune on (a training split)")
    ap.add_argument("--real-num", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ae = load_mask_autoencoder(resolve_model_path(args.ae, "mask_autoencoder"))
    scores = {}
    for preset in ("default", "dense"):
        ds = SyntheticDataset(SceneConfig.preset(preset, args.size), SampleConfig(size=args.size, num_ids=ae.num_ids),
                              seed=TUNING_SEED, length=args.num)
        scores[preset] = pq_by_postprocess(ae, ds, args.process_size)
    if args.real:
        sample = SampleConfig(size=512, num_ids=ae.num_ids, reassign=True, crowd_to_void=True)
        real = CocoInstancesDataset(Path(args.real).parent / "images", args.real, sample, seed=TUNING_SEED)
        scores["real"] = pq_by_postprocess(ae, Subset(real, range(min(args.real_num, len(real)))), args.process_size)
    mean = {c: sum(s[c] for s in scores.values()) / len(scores) for c in scores["default"]}
    for (threshold, core), pq in mean.items():
        per_set = ", ".join(f"{name} {s[threshold, core]:.1f}" for name, s in scores.items())
        print(f"threshold {threshold:.1f}, min_core_at_512 {core:5d}: PQ {per_set}, mean {pq:.1f}")
    threshold, core = max(mean, key=mean.get)
    print(f"best: threshold {threshold}, min_core_at_512 {core}")


if __name__ == "__main__":
    main()
