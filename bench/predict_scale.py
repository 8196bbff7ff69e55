"""Predict at real image sizes: time, the UNet's share of it, and peak memory, from 640x480 to 100 MP.

    python bench/predict_scale.py [--model demo] [--tasks instances,panoptic] [--old-src DIR]

Each size and task runs in a fresh process (peak RSS is per process): the demo model with its serving defaults
(ensemble of 8, 4 steps) on a synthetic scene upscaled to that size; `panoptic` (the default task of a
multi-task model) samples instances and semantic and merges them at the input size. With --old-src (a
checkout's src/ folder of an earlier commit) the same runs use that code, side by side. Writes
bench/results/predict_scale.json and the `predict_scale` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import ROOT, child_json, machine, save_results

SIZES = [(128, 128), (480, 640), (1000, 1000), (2000, 2000), (4000, 4000), (7000, 7000), (10000, 10000)]

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from PIL import Image
torch.set_num_threads(2)
from ldmseg.data.synthetic import SceneConfig, generate_scene
from ldmseg.pipeline import LDMSegPipeline
h, w, model, quick, task = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1", sys.argv[5]
pipe = LDMSegPipeline.from_pretrained(model)
pipe.set_progress_bar_config(disable=True)
scene = generate_scene([31337, 0], SceneConfig.preset("default", 128)).image
image = np.asarray(Image.fromarray(scene).resize((w, h), Image.BILINEAR))
unet_time = [0.0]
forward = pipe.unet.forward
def timed(*a, **k):
    t = time.perf_counter(); out = forward(*a, **k); unet_time[0] += time.perf_counter() - t; return out
pipe.unet.forward = timed
kwargs = {"task": task} if hasattr(pipe, "trained_tasks") else {}
pipe(image, generator=torch.Generator().manual_seed(0), **kwargs)  # warm-up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
unet_time[0] = 0.0
runs = 1 if quick else 3
best = float("inf")
for _ in range(runs):
    u0 = unet_time[0]; t = time.perf_counter()
    out = pipe(image, generator=torch.Generator().manual_seed(0), **kwargs)
    dt = time.perf_counter() - t
    if dt < best:
        best, unet = dt, unet_time[0] - u0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from torch.profiler import ProfilerActivity, profile
with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
    pipe(image, generator=torch.Generator().manual_seed(0), **kwargs)
flops = sum(e.flops or 0 for e in prof.events())
print(json.dumps({"seconds": best, "unet_share": unet / best, "peak_rss_mb": peak / 1024,
                  "image_mb": image.nbytes / 2**20, "gflop": flops / 1e9}))
"""


def run(size: tuple[int, int], model: str, src: Path, task: str = "instances") -> dict:
    quick = "1" if size[0] * size[1] > 4e6 else "0"
    return child_json(CHILD, [str(size[0]), str(size[1]), model, quick, task], src, timeout=1800,
                      LDMSEG_MAX_PIXELS="200000000")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "src" / "ldmseg" / "weights" / "demo"))
    ap.add_argument("--old-src", default=None, help="src/ of an earlier checkout, measured side by side")
    ap.add_argument("--old-model", default=None, help="the model the old code runs (default: --model)")
    ap.add_argument("--tasks", default="instances,panoptic", help="tasks measured, one column each")
    ap.add_argument("--max-mp", type=float, default=100)
    ap.add_argument("--old-max-mp", type=float, default=4,
                    help="largest input for the old code (N logit maps at full size: 100 MP would need ~50 GB)")
    args = ap.parse_args()
    sizes = [s for s in SIZES if s[0] * s[1] <= args.max_mp * 1e6]
    tasks = args.tasks.split(",")
    peak = json.loads((ROOT / "bench" / "results" / "train_speed.json").read_text())["peak_tflops"]["fp32"]
    rows, res = [], {"machine": machine(), "model": args.model, "sizes": {}}
    for h, w in sizes:
        now = {task: run((h, w), args.model, ROOT / "src", task) for task in tasks}
        old = (run((h, w), args.old_model or args.model, Path(args.old_src))
               if args.old_src and h * w <= args.old_max_mp * 1e6 else None)
        res["sizes"][f"{w}x{h}"] = {"now": now, "old": old}
        print(w, h, now, old, flush=True)

        def cell(r: dict | None) -> str:
            if r is None:
                return "-"
            if "error" in r:
                return f"failed ({r['error'][:60]})"
            text = f"{r['seconds']:.2f} s, UNet {100 * r['unet_share']:.0f} %, {r['peak_rss_mb'] / 1024:.2f} GB"
            if "gflop" in r:
                text += f", {100 * r['gflop'] / r['seconds'] / 1e3 / peak:.0f} % of peak"
            return text

        cells = " | ".join(cell(now[task]) for task in tasks)
        rows.append(f"| {w}x{h} ({w * h / 1e6:.1f} MP) | {cells} |" + (f" {cell(old)} |" if args.old_src else ""))
    lines = ["## Predict at real image sizes", "",
             "One image, the demo model's serving defaults (ensemble of 8, DPM-Solver++ 4 steps), each size and task "
             "in a fresh process; time = best of 3 (one run above 4 MP), peak = the process's peak RSS "
             f"(model and input included); share of peak = FLOPs of one call (torch.profiler's count: convs and "
             f"matmuls) per second against the fp32 matmul peak bench/train_speed.py measured ({peak:.2f} TFLOP/s). "
             f"{machine()}.", "",
             "| input | " + " | ".join(tasks) + " |" + (" instances, earlier code |" if args.old_src else ""),
             "|---|" + "---|" * len(tasks) + ("---|" if args.old_src else ""), *rows]
    save_results("predict_scale", res, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
