"""Predict on a shared machine: the time of `ldmseg predict`'s pipeline call with one busy process beside it,
against its quiet time, under passive OpenMP waiting (ldmseg's default) and torch's active spinning.

    python bench/busy_neighbour.py [--model demo] [--images 8]

Each case runs in a fresh process (OMP_WAIT_POLICY is read at start-up); the neighbour is a pure-Python
spin loop holding one core. Writes bench/results/busy_neighbour.json and the `busy_neighbour` section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from common import ROOT, machine, save_results

CHILD = r"""
import json, sys, time
import torch
from ldmseg.data.synthetic import SceneConfig, generate_scene
from ldmseg.pipeline import LDMSegPipeline
threads, model, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
if threads:
    torch.set_num_threads(threads)
pipe = LDMSegPipeline.from_pretrained(model)
pipe.set_progress_bar_config(disable=True)
images = [generate_scene([777, i], SceneConfig.preset("default", 128)).image for i in range(n)]
pipe(images[:2], generator=torch.Generator().manual_seed(0), task="instances")
best = float("inf")
for _ in range(2):
    t = time.perf_counter()
    pipe(images, generator=torch.Generator().manual_seed(0), task="instances")
    best = min(best, time.perf_counter() - t)
print(json.dumps({"seconds_per_image": best / n}))
"""

SPIN = "import time\nwhile True:\n    pass\n"


def measure(policy: str, threads: int, busy: bool, model: str, n: int) -> float:
    env = {**os.environ, "OMP_WAIT_POLICY": policy, "PYTHONPATH": str(ROOT / "src")}
    neighbour = subprocess.Popen([sys.executable, "-c", SPIN]) if busy else None
    try:
        res = subprocess.run([sys.executable, "-c", CHILD, str(threads), model, str(n)], env=env,
                             capture_output=True, text=True, timeout=1800, check=True)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    return json.loads(res.stdout.strip().splitlines()[-1])["seconds_per_image"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "src" / "ldmseg" / "weights" / "demo"))
    ap.add_argument("--images", type=int, default=8)
    args = ap.parse_args()
    cases = [("PASSIVE", 0), ("ACTIVE", 0), ("PASSIVE", 1)]
    res: dict = {"machine": machine(), "model": args.model, "images": args.images, "cases": {}}
    rows = []
    for policy, threads in cases:
        quiet = measure(policy, threads, False, args.model, args.images)
        busy = measure(policy, threads, True, args.model, args.images)
        label = f"OMP_WAIT_POLICY={policy}, " + (f"{threads} thread" if threads else "torch's threads")
        res["cases"][label] = {"quiet": quiet, "busy": busy, "ratio": busy / quiet}
        rows.append(f"| {label} | {quiet:.2f} | {busy:.2f} | {busy / quiet:.2f}x |")
        print(label, res["cases"][label], flush=True)
    lines = ["## Predict beside a busy process", "",
             f"Seconds per image of the demo pipeline (instances, ensemble of 8, 4 steps, {args.images} images of "
             "128^2), best of 2, quiet vs with one pure-Python spin loop holding a core. `ldmseg` sets "
             f"OMP_WAIT_POLICY=PASSIVE unless it is set. {machine()}.", "",
             "| setting | quiet | one busy process | ratio |", "|---|---|---|---|", *rows]
    save_results("busy_neighbour", res, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
