"""Instances at an input size above the processing resolution: PQ against the full-size ground truth, and
whether the segments' scores are finite, for this code and (with --old-src) an earlier checkout's.

    python bench/input_size.py [--model demo] [--num 50] [--size 512] [--old-src DIR]

Fresh scenes of bench/multitask.py's seed drawn at SIZE^2; the pipeline decides at its processing resolution
(128 for the demo) and paints the chosen sample at SIZE^2. Each code runs in its own process (PYTHONPATH).
Writes bench/results/input_size.json and the `input_size` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import ROOT, child_json, machine, save_results

CHILD = r"""
import json, math, sys
import torch
sys.path.insert(0, sys.argv[4])
from common import bench_pipeline
from multitask import BENCH_SEED, evaluate, task_score
from ldmseg.data.synthetic import SceneConfig, generate_scene
torch.set_num_threads(2)
model, num, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pipe = bench_pipeline(model)
data = [generate_scene([BENCH_SEED, i], SceneConfig.preset("default", size)) for i in range(num)]
outs, seconds = evaluate(pipe, data, 4, "instances")
scores = [s["score"] for _, segs in outs for s in segs]
void = sum(float((pred == 0).mean()) for pred, _ in outs) / len(outs)
print(json.dumps({"pq": task_score("instances", data, outs), "s_per_image": seconds, "segments": len(scores),
                  "nan_scores": sum(not math.isfinite(x) for x in scores), "void_share": void}))
"""


def run(src: Path, model: str, num: int, size: int) -> dict:
    return child_json(CHILD, [model, str(num), str(size), str(ROOT / "bench")], src)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="demo")
    ap.add_argument("--num", type=int, default=50)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--old-src", default=None, help="src/ of an earlier checkout, measured side by side")
    ap.add_argument("--old-label", default="earlier code")
    args = ap.parse_args()
    runs = {"now": run(ROOT / "src", args.model, args.num, args.size)}
    if args.old_src:
        runs[args.old_label] = run(Path(args.old_src), args.model, args.num, args.size)
    res = {"machine": machine(), "model": args.model, "num": args.num, "size": args.size, "runs": runs}
    lines = ["## Instances at an input size above the processing resolution", "",
             f"Model `{args.model}`, {args.num} fresh scenes (bench/multitask.py's seed) drawn at {args.size}^2, "
             f"decided at the processing resolution and painted at {args.size}^2, serving defaults; PQ against the "
             f"{args.size}^2 ground truth (class-agnostic). `python bench/input_size.py`. {machine()}.", "",
             "| code | PQ | VOID share of pixels | segments with a NaN score | s / image |", "|---|---|---|---|---|"]
    for name, r in runs.items():
        if "error" in r:
            lines.append(f"| {name} | failed ({r['error'][:60]}) | | | |")
            continue
        lines.append(f"| {name} | {r['pq']:.1f} | {100 * r['void_share']:.1f} % | {r['nan_scores']} of "
                     f"{r['segments']} | {r['s_per_image']:.2f} |")
    save_results("input_size", res, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
