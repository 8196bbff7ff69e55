"""The GPU check (issue 45), for the day a GPU machine is lent: demo and converted full-size (random weights of the
released shapes, bench/original_full_size.py) predictions on the GPU, timed whole through the CLI in fp32 / bf16 /
fp16, with 1 process and with N processes under `accelerate launch` where there are GPUs for them; and the GPU's
outputs checked against the CPU's on the demo (same ids on most pixels: float rounding only).

    bash scripts/gpu_check.sh                 # on the GPU machine: bench/results/gpu_check.json + its section
    python bench/gpu_check.py --dry-run       # anywhere: checks the arguments and prints the commands it would run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PRECISIONS = ("fp32", "bf16", "fp16")


def predict_command(model: str, images: Path, out: Path, precision: str, processes: int, steps: int | None
                    ) -> list[str]:
    """The CLI run of one setting: `ldmseg predict` alone, or under `accelerate launch` for several processes."""
    tail = ["-m", "ldmseg", "predict", "--model", model, "--images", str(images), "--out", str(out),
            "--precision", precision, "--device", "auto", "--batch-size", "4", "--task", "instances"]
    tail += ["--steps", str(steps)] if steps else []
    if processes == 1:
        return [sys.executable, *tail]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *tail]


def plan(args: argparse.Namespace, gpus: int, converted: Path) -> list[dict]:
    """Every timed run: model x precision x process count (1, and min(4, gpus) when there are several)."""
    counts = sorted({1, min(4, gpus)}) if gpus > 1 else [1]
    models = {"demo": (None, args.demo_images), "full size (random weights)": (str(converted), args.full_images)}
    runs = []
    for name, (model, count) in models.items():
        for precision in PRECISIONS:
            for processes in counts:
                runs.append({"model": name, "path": model or "demo", "images": count, "precision": precision,
                             "processes": processes, "steps": args.full_steps if model else None})
    return runs


def write_images(folder: Path, count: int, size: int) -> Path:
    from ldmseg.data.formats import write_png
    from ldmseg.data.synthetic import SceneConfig, generate_scene

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        write_png(folder / f"{i:04d}.png", generate_scene([7070, i], SceneConfig.preset("default", size)).image)
    return folder


def cpu_agreement(work: Path) -> dict:
    """The demo's instance maps on the GPU against the CPU's, per pixel (same seeds, fp32)."""
    import numpy as np
    import torch

    from ldmseg.data.formats import read_rgb
    from ldmseg.devices import image_generators
    from ldmseg.pipeline import LDMSegPipeline

    images = [read_rgb(p) for p in sorted((work / "demo-images").glob("*.png"))[:8]]
    maps = {}
    for device in ("cpu", "cuda"):
        pipe = LDMSegPipeline.from_pretrained("demo").to(device)
        out = pipe(images, task="semantic", precision="fp32", generator=image_generators(0, range(len(images))))
        maps[device] = np.stack(out.semantic)
    torch.cuda.empty_cache()
    return {"semantic_pixels_equal": float((maps["cpu"] == maps["cuda"]).mean())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/ldmseg-gpu-check")
    ap.add_argument("--demo-images", type=int, default=64)
    ap.add_argument("--full-images", type=int, default=8)
    ap.add_argument("--full-steps", type=int, default=20, help="sampling steps of the full-size runs (fast preset)")
    ap.add_argument("--dry-run", action="store_true", help="check the arguments, print the commands, run nothing")
    args = ap.parse_args()
    if min(args.demo_images, args.full_images, args.full_steps) < 1:
        raise SystemExit("gpu_check: --demo-images, --full-images and --full-steps must be >= 1")
    work = Path(args.work)
    import torch

    gpus = torch.cuda.device_count()
    runs = plan(args, gpus if not args.dry_run else max(gpus, 4), work / "converted")
    if args.dry_run:
        for run in runs:
            images = work / ("demo-images" if run["path"] == "demo" else "full-images")
            print(" ".join(predict_command(run["path"], images, work / "out", run["precision"], run["processes"],
                                           run["steps"])))
        return
    if not gpus:
        raise SystemExit("gpu_check: no CUDA GPU here (torch.cuda.device_count() == 0)")
    sys.path.insert(0, str(Path(__file__).parent))
    from common import machine, save_results
    from original_full_size import convert

    work.mkdir(parents=True, exist_ok=True)
    write_images(work / "demo-images", args.demo_images, 128)
    write_images(work / "full-images", args.full_images, 512)
    res = {"machine": machine(), "gpu": torch.cuda.get_device_name(0), "gpus": gpus, "convert": convert(work),
           "agreement": cpu_agreement(work), "runs": []}
    for run in runs:
        images = work / ("demo-images" if run["path"] == "demo" else "full-images")
        out = work / f"out-{len(res['runs'])}"
        start = time.perf_counter()
        done = subprocess.run(predict_command(run["path"], images, out, run["precision"], run["processes"],
                                              run["steps"]), capture_output=True, text=True, timeout=900)
        seconds = time.perf_counter() - start
        run.update(seconds=seconds, images_per_s=run["images"] / seconds, exit=done.returncode,
                   error=(done.stderr.strip().splitlines() or [""])[-1][:300] if done.returncode else "")
        res["runs"].append(run)
        print(json.dumps(run), flush=True)
    lines = ["## GPU check", "", f"{res['gpu']} x {gpus}; {res['machine']}. `scripts/gpu_check.sh`, "
             "`bench/results/gpu_check.json`. Whole `ldmseg predict` runs (start-up included), task instances.", "",
             f"GPU vs CPU, demo semantic maps, fp32: {100 * res['agreement']['semantic_pixels_equal']:.2f} % of "
             "pixels equal.", "", "| model | precision | processes | images | s | images/s |",
             "|---|---|---|---|---|---|"]
    for r in res["runs"]:
        lines.append(f"| {r['model']} | {r['precision']} | {r['processes']} | {r['images']} | {r['seconds']:.1f} | "
                     + (f"{r['images_per_s']:.2f} |" if not r["exit"] else f"failed: {r['error']} |"))
    save_results("gpu_check", res, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
