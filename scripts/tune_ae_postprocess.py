"""Choose a mask AE's reconstruction post-processing (`ldmseg reconstruct`'s threshold and id-pruning defaults)
on tuning scenes.

    python scripts/tune_ae_postprocess.py [--ae demo] [--num 48] [--size 256] [--process-size 512]

Each mask is encoded and decoded once (at --process-size, as `ldmseg reconstruct --resolution` does) and every
candidate post-processing scores the same decoded distributions. The scenes (default and dense presets) use a
seed of their own: neither the AE's training scenes, nor its validation scenes, nor bench/autoencoder.py's.
Prints PQ per candidate and preset, and the best by the presets' mean.
"""

from __future__ import annotations

import argparse
from itertools import product

import torch

from ldmseg.data.datasets import SampleConfig, SyntheticDataset
from ldmseg.data.synthetic import SceneConfig
from ldmseg.data.transforms import resize_labels
from ldmseg.diffusion.postprocess import logits_to_panoptic, scaled_area
from ldmseg.metrics.panoptic import PanopticEvaluator, segments_from_ids
from ldmseg.models.loading import load_mask_autoencoder
from ldmseg.training.autoencoder import VAL_SEED_OFFSET
from ldmseg.weights import resolve_model_path

TUNING_SEED = 31 + VAL_SEED_OFFSET
THRESHOLDS = (0.0, 0.5)
CORES_AT_512 = (0, 32, 64, 128, 256, 512, 1024)


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
    args = ap.parse_args()
    torch.set_num_threads(2)
    ae = load_mask_autoencoder(resolve_model_path(args.ae, "mask_autoencoder"))
    scores = {}
    for preset in ("default", "dense"):
        ds = SyntheticDataset(SceneConfig.preset(preset, args.size), SampleConfig(size=args.size, num_ids=ae.num_ids),
                              seed=TUNING_SEED, length=args.num)
        scores[preset] = pq_by_postprocess(ae, ds, args.process_size)
    mean = {c: sum(s[c] for s in scores.values()) / len(scores) for c in scores["default"]}
    for (threshold, core), pq in mean.items():
        default, dense = (scores[preset][threshold, core] for preset in ("default", "dense"))
        print(f"threshold {threshold:.1f}, min_core_at_512 {core:5d}: PQ default {default:.1f}, dense {dense:.1f}, "
              f"mean {pq:.1f}")
    threshold, core = max(mean, key=mean.get)
    print(f"best: threshold {threshold}, min_core_at_512 {core}")


if __name__ == "__main__":
    main()
