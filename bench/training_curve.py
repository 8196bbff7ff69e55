"""Stage-2 PQ vs training: every saved stage of the demo model's training, scored the same way on the
stage-2 benchmark's scenes (bench/diffusion.py), so the points of one curve can be compared.

    python bench/training_curve.py --stage "H100 2300 steps" runs/gpu-ldmseg-fp32 147200 4 \
                                   --stage "CPU fine-tuning 1" runs/demo-ldmseg-ft/model 134400 96 ...

Each --stage is LABEL PATH SAMPLES MINUTES (training samples seen in that stage, its wall-clock minutes).
Each model is sampled once (DPM-Solver++ trailing, 4 steps, fixed seed); its logits are scored twice: with
the id pruning it shipped with, and with the last stage's, to separate training from post-processing.
Runs are not committed: the results stay in bench/results/training_curve.json, and --reuse takes the
points of stages already scored there (same label and --num) instead of sampling them again.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from common import RESULTS, ROOT, machine, new_plot, save_plot, save_results
from diffusion import BENCH_SEED

from ldmseg.commands.predict import load_pipeline
from ldmseg.data.datasets import SampleConfig, SyntheticDataset
from ldmseg.data.synthetic import SceneConfig

sys.path.insert(0, str(ROOT / "scripts"))
from tune_min_core import sampled_pq_by_min_core  # noqa: E402  (the tuning script's helper)

STEPS = 4


def stage_pq(path: str, num: int, cores: dict[str, float]) -> dict[str, float]:
    """PQ of one saved pipeline's samples on the benchmark scenes, for each named id-pruning size
    and for the one it was saved with ("own")."""
    pipe = load_pipeline(path)
    pipe.use_sampler("dpm++", "trailing")
    size = pipe.config.default_processing_resolution
    ds = SyntheticDataset(SceneConfig.preset("default", size),
                          SampleConfig(size=size, num_ids=pipe.mask_autoencoder.num_ids, crowd_to_void=True),
                          seed=BENCH_SEED, length=num)
    own = pipe.config.min_core_at_512
    return sampled_pq_by_min_core(pipe, ds, {"own": own, **cores}, steps=STEPS) | {"min_core": own}


def previous_points(num: int, last_core: float) -> dict[str, dict]:
    """Scores of stages in the results file scored on as many scenes with the same last-stage pruning."""
    path = RESULTS / "training_curve.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    if old.get("num") != num:
        return {}
    keys = ("min_core", "pq_own", "pq_last", "last_core")
    return {p["stage"]: {k: p[k] for k in keys} for p in old["points"] if p.get("last_core") == last_core}


PAPER_SAMPLES = 50_000 * 256  # the paper's COCO run: 50k iterations at batch 256, from Stable Diffusion weights
CPU_SAMPLES_PER_S = 30  # the demo's CPU fine-tuning: batch 32 at ~1.06 s/step (bf16 autocast, 2 cores)


def limits(points: list[dict]) -> list[str]:
    """What limits the curve, in figures: its slope, the mask AE's ceiling, the paper's training budget."""
    diffusion = RESULTS / "diffusion.json"
    ceiling = json.loads(diffusion.read_text())["one_step_x0_pq"]["0"] if diffusion.exists() else None
    if len(points) < 3:
        return []
    last, before = points[-1], points[-3]
    slope = (last["pq_last"] - before["pq_last"]) / ((last["samples_total"] - before["samples_total"]) / 1e5)
    trend = "still rising" if slope > 0.5 else "flattening"
    hours = 1e6 / CPU_SAMPLES_PER_S / 3600
    lines = ["", "What limits it:", "",
             f"- Training compute. The last two stages added {last['pq_last'] - before['pq_last']:.1f} PQ "
             f"({slope:.1f} per 100k samples, same id pruning): {trend}. In all, the model has seen "
             f"{last['samples_total'] / 1e6:.2f} M samples from random initialisation; the paper's COCO run saw "
             f"{PAPER_SAMPLES / 1e6:.1f} M, starting from Stable Diffusion's weights. At this CPU's "
             f"~{CPU_SAMPLES_PER_S} samples/s a further million samples is ~{hours:.0f} hours."]
    if ceiling is not None:
        lines.append(f"- The mask AE at this resolution. Decoding the true latents (t = 0 above) gives PQ "
                     f"{ceiling:.1f}: no sampler can beat that, and 50 would be {100 * 50 / ceiling:.0f} % of it "
                     f"(the last stage reaches {100 * last['pq_last'] / ceiling:.0f} %). Small segments are what "
                     "the AE loses (stage-1 sections above).")
    return lines


def plot(points: list[dict], path) -> None:
    fig, ax = new_plot((5.5, 3.4))
    x = [p["samples_total"] / 1000 for p in points]
    ax.plot(x, [p["pq_own"] for p in points], marker="o", label="id pruning as shipped then")
    ax.plot(x, [p["pq_last"] for p in points], marker="s", label="last stage's id pruning")
    for xi, p in zip(x, points, strict=True):
        ax.annotate(f"{p['minutes_total']:.0f} min", (xi, p["pq_own"]), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=7)
    ax.margins(x=0.06, y=0.12)  # room for the minute labels
    save_plot(fig, ax, path, "training samples seen (thousands)", "class-agnostic PQ (DPM++ 4 steps)", legend_size=8)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", nargs=4, action="append", required=True,
                    metavar=("LABEL", "PATH", "SAMPLES", "MINUTES"))
    ap.add_argument("--num", type=int, default=500)
    ap.add_argument("--reuse", action="store_true", help="keep stages already scored in the results file")
    args = ap.parse_args()
    torch.set_num_threads(2)
    last_core = load_pipeline(args.stage[-1][1]).config.min_core_at_512
    scored = previous_points(args.num, last_core) if args.reuse else {}
    points, samples_total, minutes_total = [], 0, 0.0
    for label, path, samples, minutes in args.stage:
        samples_total += int(samples)
        minutes_total += float(minutes)
        if label in scored:
            pq = scored[label]
        else:
            pq = stage_pq(path, args.num, {"last": last_core})
            pq = {"min_core": pq["min_core"], "pq_own": pq["own"], "pq_last": pq["last"], "last_core": last_core}
        points.append({"stage": label, "samples_total": samples_total, "minutes_total": minutes_total, **pq})
        print(points[-1], flush=True)
    plot(points, ROOT / "docs" / "figures" / "pq_vs_training.png")
    lines = ["## Stage 2: PQ vs training", "",
             f"Every saved stage of the demo model's training, sampled the same way (DPM-Solver++ trailing, "
             f"{STEPS} steps, seed 0) on the first {args.num} scenes of the stage-2 benchmark. {machine()}. "
             "Minutes are wall-clock training time (the first stage on one H100, the rest on the 2-core CPU).", "",
             "| stage | samples seen | minutes | id pruning then (px at 512^2) | PQ | PQ, last stage's id pruning |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {p['stage']} | {p['samples_total'] / 1000:.0f}k | {p['minutes_total']:.0f} | {p['min_core']:.0f} "
              f"| {p['pq_own']:.1f} | {p['pq_last']:.1f} |" for p in points]
    lines += ["", "![PQ vs training](figures/pq_vs_training.png)", *limits(points)]
    save_results("training_curve", {"machine": machine(), "num": args.num, "steps": STEPS, "points": points},
                 "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
