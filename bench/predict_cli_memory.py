"""Peak memory of the whole `ldmseg predict` command on one very large image (issue 36: 81 MP in <= 3 GB): the
pipeline plus everything the command writes (panoptic PNG, semantic PNG, overlay), as the process's peak RSS.

    python bench/predict_cli_memory.py [--size 9000] [--old-src DIR]

The demo model with its serving defaults (default task), one synthetic scene upscaled to SIZE x SIZE, each run in a
fresh process. With --old-src (an earlier checkout's src/) the same command runs on that code, side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine, save_results

WRAPPER = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True); "
    "print(rc.returncode, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
    "(rc.stderr.strip().splitlines() or [''])[-1][:200].replace(' ', '_'))")


def big_image(folder: Path, size: int) -> Path:
    from PIL import Image

    from ldmseg.data.synthetic import SceneConfig, generate_scene

    scene = generate_scene(0, SceneConfig.preset("default", 512)).image
    path = folder / "images" / "big.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(scene).resize((size, size), Image.BILINEAR).save(path)
    return path


def run(src: Path, images: Path, out: Path, threads: int) -> dict:
    """One `ldmseg predict` in a fresh process importing ldmseg from `src`: exit code, seconds, peak RSS (GB)."""
    cmd = [sys.executable, "-c", "import sys; from ldmseg.cli import main; sys.exit(main())", "predict",
           "--images", str(images), "--out", str(out), "--threads", str(threads)]
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_WAIT_POLICY": "PASSIVE", "LDMSEG_MAX_PIXELS": "200000000"}
    res = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], env=env, capture_output=True, text=True, check=True)
    rc, seconds, peak_kb, err = res.stdout.split()
    return {"exit": int(rc), "seconds": float(seconds), "peak_rss_gb": int(peak_kb) / 2**20,
            "error": err.replace("_", " ") if int(rc) else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=9000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--old-src", default=None, help="src/ of an earlier checkout, measured side by side")
    args = ap.parse_args()
    started = time.time()
    results = {"machine": machine(), "size": args.size, "threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        images = big_image(Path(tmp), args.size).parent
        results["now"] = run(ROOT / "src", images, Path(tmp) / "now", args.threads)
        if args.old_src:
            results["old"] = run(Path(args.old_src), images, Path(tmp) / "old", args.threads)
    print(json.dumps(results, indent=1))

    def cell(r: dict) -> str:
        return f"{r['peak_rss_gb']:.2f} GB, {r['seconds']:.0f} s" + (f" (failed: {r['error']})" if r["exit"] else "")

    mp = args.size**2 / 1e6
    md = (f"## Predict on one {mp:.0f} MP image: the whole command's peak memory\n\n"
          f"`ldmseg predict` (demo, default task, serving defaults, {args.threads} threads) on one {args.size}x"
          f"{args.size} image, peak RSS of the process: model, pipeline and every output it writes (panoptic and "
          f"semantic PNGs, the overlay). Overlays and blends are computed in row bands, COCO-RGB ids read in place. "
          f"{machine()}. "
          "`python bench/predict_cli_memory.py --old-src OLD/src`.\n\n"
          "| code | peak RSS, wall |\n|---|---|\n"
          f"| now | {cell(results['now'])} |\n"
          + (f"| before (whole-image float overlay, uint32 id2rgb) | {cell(results['old'])} |\n"
             if "old" in results else ""))
    save_results("predict_cli_memory", results, md)
    print(md, f"({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
