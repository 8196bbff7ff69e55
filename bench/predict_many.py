"""`ldmseg predict` over many images: peak memory against the number of images (it must not grow with it), and
throughput of one process with 2 threads against 2 processes with 1 thread each (`accelerate launch`) on 2 cores.

    python bench/predict_many.py [--counts 200 2000] [--throughput-images 64]

Peak RSS: each count in a fresh process running the command in-process (demo model, task instances, one step and
one sample so that 2,000 images take minutes; memory per image does not depend on the steps). Throughput: the
demo at its serving defaults. Writes bench/results/predict_many.json and its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, save_results

CHILD = r"""
import json, resource, sys
from ldmseg.cli import main
code = main(sys.argv[1:])
print(json.dumps({"exit": code, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_images(folder: Path, count: int) -> Path:
    from ldmseg.data.formats import write_png
    from ldmseg.data.synthetic import SceneConfig, generate_scene

    folder.mkdir(parents=True, exist_ok=True)
    cfg = SceneConfig.preset("default", 128)
    for i in range(count):
        write_png(folder / f"{i:05d}.png", generate_scene([5150, i], cfg).image)
    return folder


def peak_rss(images: Path, out: Path) -> dict:
    args = ["predict", "--images", str(images), "--out", str(out), "--task", "instances", "--steps", "1",
            "--ensemble-size", "1", "--threads", "2", "--batch-size", "8"]
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=3600)
    found = json.loads(res.stdout.strip().splitlines()[-1])
    return {**found, "seconds": time.perf_counter() - start}


def throughput(images: Path, out: Path, processes: int, threads: int) -> float:
    """Images per second of a whole run (start-up included)."""
    tail = ["-m", "ldmseg", "predict", "--images", str(images), "--out", str(out), "--task", "instances",
            "--threads", str(threads)]
    cmd = [sys.executable, *tail] if processes == 1 else [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *tail]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, timeout=3600)
    return len(list(images.iterdir())) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", type=int, nargs="+", default=[200, 2000])
    ap.add_argument("--throughput-images", type=int, default=64)
    args = ap.parse_args()
    res: dict = {"machine": machine(), "memory": {}, "throughput": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for count in args.counts:
            res["memory"][count] = peak_rss(write_images(root / f"in{count}", count), root / f"out{count}")
            print(count, res["memory"][count], flush=True)
        few = write_images(root / "few", args.throughput_images)
        for processes, threads in ((1, 2), (2, 1)):
            res["throughput"][f"{processes}x{threads}"] = throughput(few, root / f"t{processes}", processes, threads)
            print(processes, threads, res["throughput"][f"{processes}x{threads}"], flush=True)
    mem, thr = res["memory"], res["throughput"]
    lines = ["## Predict over many images", "", f"{machine()}. `bench/predict_many.py`, "
             "`bench/results/predict_many.json`.", "",
             "Peak RSS of a whole `ldmseg predict` (demo, task instances, 1 step, 1 sample, 128^2 scenes):", "",
             "| images | peak RSS (MB) | s |", "|---|---|---|"]
    lines += [f"| {n} | {m['peak_rss_mb']:.0f} | {m['seconds']:.0f} |" for n, m in mem.items()]
    lines += ["", f"Throughput, demo at its serving defaults, {args.throughput_images} images, start-up included: "
              f"1 process x 2 threads {thr['1x2']:.2f} images/s, 2 processes x 1 thread (`accelerate launch`) "
              f"{thr['2x1']:.2f} images/s ({100 * (thr['2x1'] / thr['1x2'] - 1):+.0f} %)."]
    save_results("predict_many", res, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
