"""bf16 autocast at inference against fp32: the same scenes, seeds and model, each task's quality and time.

    python bench/precision.py [--model demo] [--num 50]

Fresh scenes of bench/multitask.py's seed; instances (class-agnostic PQ), semantic (mIoU), depth (RMSE) with the
serving defaults; each precision runs every task twice, interleaved (fp32, bf16, fp32, bf16), and the faster
of the two counts. Writes bench/results/precision.json and the `precision` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse

import torch
from common import bench_pipeline, machine, save_results
from multitask import BENCH_SEED, evaluate, scenes, task_score


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="demo")
    ap.add_argument("--num", type=int, default=50)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(2)
    pipe = bench_pipeline(args.model)
    data = scenes(BENCH_SEED, args.num, pipe.config.default_processing_resolution)
    tasks = [t for t in ("instances", "semantic", "depth") if t in pipe.tasks]
    res: dict = {"machine": machine(), "model": args.model, "num": args.num, "seed": BENCH_SEED, "tasks": {}}
    for task in tasks:
        row: dict = {}
        for precision in ("fp32", "bf16", "fp32", "bf16"):
            outs, seconds = evaluate(pipe, data, args.batch, task, precision=precision)
            entry = row.setdefault(precision, {"score": task_score(task, data, outs), "s_per_image": seconds})
            entry["s_per_image"] = min(entry["s_per_image"], seconds)
        res["tasks"][task] = row
        print(task, row, flush=True)
    metric = {"instances": "PQ", "semantic": "mIoU", "depth": "RMSE"}
    lines = ["## bf16 at inference", "",
             f"Model `{args.model}`, {args.num} fresh synthetic scenes (seed {BENCH_SEED}), serving defaults, the same "
             f"sampling seed for both; `pipe(..., precision=...)` / `--precision`. Time: the faster of two interleaved "
             f"runs. {machine()}.", "",
             "| task | metric | fp32 | bf16 | s / image fp32 | s / image bf16 | speed-up |",
             "|---|---|---|---|---|---|---|"]
    for task, row in res["tasks"].items():
        f, b = row["fp32"], row["bf16"]
        fmt = ".4f" if task == "depth" else ".1f"
        lines.append(f"| {task} | {metric[task]} | {f['score']:{fmt}} | {b['score']:{fmt}} | {f['s_per_image']:.3f} | "
                     f"{b['s_per_image']:.3f} | x{f['s_per_image'] / b['s_per_image']:.2f} |")
    save_results("precision", res, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
