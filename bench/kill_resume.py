"""kill -9 at random points of a training run, then `--resume latest`: does every run continue bit-exactly?

    python bench/kill_resume.py [--points 20]

A tiny stage-1 run (8 steps, a checkpoint every step, 2 kept) is killed at a random moment after its first
checkpoint folder appears (during a step, a checkpoint write, or the final export), resumed with
`--resume latest` and nothing else, and its final weights compared with an uninterrupted run's.
Writes bench/results/kill_resume.json and the `kill_resume` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import machine, save_results

from ldmseg.training import checkpoint

FLAGS = ["--max-steps", "8", "--checkpoint-every", "1", "--val-every", "0", "--checkpoints-total-limit", "2",
         "--resolution", "32", "--val-resolution", "32", "--val-num", "4", "--batch-size", "2",
         "--encoder-channels", "4", "8", "8", "8", "--decoder-channels", "8", "--warmup-steps", "2", "--threads", "1"]


def train(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ldmseg", "train-ae", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=900)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="ldmseg-kill-"))
    t0 = time.monotonic()
    assert train(root / "full", *FLAGS).returncode == 0
    run_seconds = time.monotonic() - t0
    reference = checkpoint.load_tree(root / "full" / "checkpoints" / "step_00000008", "model")
    results = []
    for k in range(args.points):
        run = root / f"killed{k}"
        proc = subprocess.Popen([sys.executable, "-m", "ldmseg", "train-ae", "--out", str(run), *FLAGS],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not (run / "checkpoints").exists() and proc.poll() is None:
            time.sleep(0.02)
        delay = rng.uniform(0.0, 0.8)
        time.sleep(delay)
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        found = [c.name for c in (run / "checkpoints").iterdir()] if (run / "checkpoints").exists() else []
        res = train(run, "--resume", "latest")
        final = run / "checkpoints" / "step_00000008"
        exact = res.returncode == 0 and final.exists() and all(
            torch.equal(v, checkpoint.load_tree(final, "model")[n]) for n, v in reference.items())
        leftovers = [c.name for c in (run / "checkpoints").iterdir() if not c.name[5:].isdigit()]
        results.append({"delay_s": delay, "finished_before_kill": finished, "checkpoints_at_kill": sorted(found),
                        "resumed": res.returncode == 0, "exact": bool(exact), "leftovers": leftovers,
                        "error": res.stderr.strip().splitlines()[-1] if res.returncode else ""})
        print(k, results[-1], flush=True)
        shutil.rmtree(run, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    exact = sum(r["exact"] and not r["leftovers"] for r in results)
    mid_write = sum(any(n.endswith((".tmp", ".rng")) for n in r["checkpoints_at_kill"]) for r in results)
    lines = ["## Resume after kill -9", "",
             f"{args.points} runs of a tiny stage-1 training (8 steps, a checkpoint every step; one uninterrupted "
             f"run takes {run_seconds:.1f} s with start-up) killed with SIGKILL at a random moment after the first "
             f"checkpoint, then resumed with `--resume latest` and no other flag. {machine()}.", "",
             f"- resumed bit-exactly (final weights equal to the uninterrupted run's, no leftovers): "
             f"**{exact} / {args.points}**",
             f"- killed while a checkpoint was being written (a .tmp / .rng folder present): {mid_write}"]
    save_results("kill_resume", {"machine": machine(), "points": results, "exact": exact}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
