"""What a model that sees only the image could reach on synthetic depth: oracles that know the segmentation.

    python bench/depth_oracles.py [--num 100]

Every oracle is given the exact stuff depth (sky at 1, the ground plane's ramp: both readable from the image)
and differs only in what it predicts for each visible object:
- "object depth unknown": one constant for every object (the training mean of object depth), the best a model
  can do when depth is not shown by the image;
- "perspective cues": a least-squares fit, on training scenes, of object depth on what the visible segment shows
  (its rows, columns, area: where it sits in the frame and how large it is drawn);
- "jitter floor": the error the generator's jitter (DEPTH_JITTER) alone leaves, an object placed exactly.
Scored on bench/multitask.py's fresh scenes. Writes bench/results/depth_oracles.json and the `depth_oracles`
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse

import numpy as np
from common import machine, save_results
from multitask import BENCH_SEED, TRAIN_SEED, scenes

from ldmseg.data.synthetic import DEPTH_JITTER, categories


def object_segments(scene) -> list[tuple[np.ndarray, np.ndarray]]:
    """(mask, features) of each visible thing segment: features from the mask alone (position and size)."""
    things = {c["id"] for c in categories() if c["isthing"]}
    size = scene.ids.shape[0]
    out = []
    for seg in scene.segments:
        if seg["category_id"] not in things:
            continue
        mask = scene.ids == seg["id"]
        ys, xs = np.nonzero(mask)
        top, bottom, left, right = ys.min() / size, (ys.max() + 1) / size, xs.min() / size, (xs.max() + 1) / size
        log_area = np.log(mask.sum() / size**2)
        extent = np.log(max(bottom - top, right - left))
        feats = np.array([1.0, ys.mean() / size, top, bottom, log_area, extent, log_area * ys.mean() / size,
                          float(left <= 0 or top <= 0 or right >= 1 or bottom >= 1)])
        out.append((mask, feats))
    return out


def fit_cues(train: list) -> np.ndarray:
    """Least-squares weights from segment features to the segment's depth, over the training scenes."""
    xs, ys = [], []
    for scene in train:
        for mask, feats in object_segments(scene):
            xs.append(feats)
            ys.append(float(np.median(scene.depth[mask])))
    return np.linalg.lstsq(np.stack(xs), np.array(ys), rcond=None)[0]


def oracle_rmse(data: list, predict) -> tuple[float, float]:
    """RMSE over all pixels and over object pixels when each object's depth is `predict(feats)`."""
    total = obj = n_obj = 0.0
    for scene in data:
        pred = scene.depth.copy()
        for mask, feats in object_segments(scene):
            pred[mask] = predict(feats)
            n_obj += mask.sum()
            obj += ((pred[mask] - scene.depth[mask]) ** 2).sum()
        total += ((pred - scene.depth) ** 2).sum()
    return float(np.sqrt(total / sum(s.depth.size for s in data))), float(np.sqrt(obj / n_obj))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--num", type=int, default=100)
    ap.add_argument("--train", type=int, default=400)
    args = ap.parse_args()
    train, data = scenes(TRAIN_SEED, args.train, 128), scenes(BENCH_SEED, args.num, 128)
    mean_object = float(np.mean([np.median(s.depth[m]) for s in train for m, _ in object_segments(s)]))
    weights = fit_cues(train)
    object_fraction = float(np.mean([sum(m.sum() for m, _ in object_segments(s)) / s.depth.size for s in data]))
    res = {"machine": machine(), "num": args.num, "train": args.train, "seed": BENCH_SEED,
           "object_pixel_fraction": object_fraction,
           "object depth unknown": oracle_rmse(data, lambda f: mean_object),
           "perspective cues": oracle_rmse(data, lambda f: float(f @ weights)),
           "jitter floor": (float(np.sqrt(object_fraction) * DEPTH_JITTER), DEPTH_JITTER)}
    rows = [f"| {name} | {res[name][0]:.4f} | {res[name][1]:.4f} |"
            for name in ("object depth unknown", "perspective cues", "jitter floor")]
    lines = ["## Depth: what the image shows (oracles)", "",
             f"{args.num} of bench/multitask.py's fresh scenes (128x128, seed {BENCH_SEED}); objects cover "
             f"{100 * object_fraction:.0f} % of the pixels. Each oracle knows the segmentation and the stuff depth "
             "(sky, the ground plane's ramp) and predicts one depth per visible object: a constant (depth not "
             "shown by the image), a least-squares fit on the visible segment's position and size "
             f"({args.train} training scenes; `perspective_depth` in the generator: nearer objects lower and "
             f"larger), or the truth up to the generator's jitter (std {DEPTH_JITTER}). The multi-task model "
             "must also find the segments and is bounded by its depth AE (bench/multitask.py). "
             f"{machine()}. `python bench/depth_oracles.py`.", "",
             "| oracle | RMSE, all pixels | RMSE, object pixels |", "|---|---|---|", *rows]
    save_results("depth_oracles", res, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
