"""Performance at a glance: each hot path's time, its share of this machine's measured peak and its ratio to
the reference, assembled from the other scripts' results (run them first; nothing is measured here).

    python bench/summary.py

Sources: evaluate_speed.json, predict_scale.json, unet_share.json, busy_neighbour.json, train_speed.json,
precision.json in bench/results. Writes the `at_a_glance` section of docs/benchmarks.md (the scripts' own sections
hold the detail).
"""

from __future__ import annotations

import json

from common import RESULTS, save_results


def load(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def rows() -> list[str]:
    out = []
    ev = load("evaluate_speed").get("runs", {})
    ref, ours = ev.get("panopticapi pq_compute (its default: 1 process per core)"), ev.get(
        "ldmseg evaluate, 2 workers (default: all cores)")
    if ref and ours:
        out.append(f"| `ldmseg evaluate`, 300 pairs 640x480, whole process | {ours['seconds']:.2f} s | - (PNG decoding "
                   f"and integer counting, no matmuls) | {ours['seconds'] / ref['seconds']:.2f}x panopticapi "
                   f"({ref['seconds']:.2f} s) | <= 0.6x |")
    train = load("train_speed")
    peak = train.get("peak_tflops", {})
    scale = load("predict_scale").get("sizes", {})
    for key, label, target in (("128x128", "predict 128x128, ensemble of 8", ">= 35 % of the fp32 peak"),
                               ("640x480", "predict 640x480, ensemble of 8", "UNet >= 40 %")):
        r = scale.get(key, {}).get("now", {})
        r = r.get("instances", r)
        if "seconds" in r:
            share = f"{100 * r['gflop'] / r['seconds'] / 1e3 / peak['fp32']:.0f} % of fp32" if "gflop" in r and peak \
                else "-"
            old = scale[key].get("old") or {}
            ratio = f"{old['seconds'] / r['seconds']:.1f}x faster than the earlier code" if "seconds" in old else "-"
            out.append(f"| {label} (instances) | {r['seconds']:.2f} s, UNet {100 * r['unet_share']:.0f} % | {share} "
                       f"| {ratio} | {target} |")
    share = load("unet_share")
    if share:
        whole, unet = share["rows"]["whole predict call (instances)"], share["rows"]["UNet, eager, channels_last"]
        cpu = share["machine"].split("(")[1].split(",")[0] if "(" in share["machine"] else "another CPU"
        out.append(f"| predict 128x128, ensemble of 8, fp32 on the {cpu} (bench/unet_share.py) | "
                   f"{whole['seconds']:.2f} s | {100 * whole['share_fp32']:.0f} % of its fp32 peak "
                   f"({share['peak_tflops_fp32']:.2f} TFLOP/s); the UNet call alone {100 * unet['share_fp32']:.0f} % | "
                   "- | >= 35 % of the fp32 peak |")
    busy = load("busy_neighbour").get("cases", {}).get("OMP_WAIT_POLICY=PASSIVE, torch's threads")
    if busy:
        out.append(f"| predict beside a busy process (default threads) | {busy['busy']:.2f} s / image | - | "
                   f"{busy['ratio']:.2f}x its quiet time | <= 2x |")
    ae, s2 = train.get("ae", {}), train.get("stage2", {})
    before, after = ae.get("before: hand-written norm, dense logits, fp32"), ae.get("+ bf16 autocast")
    if before and after and peak:
        out.append(f"| stage-1 training step (16 x 256^2) | {after['s_per_step']:.2f} s | "
                   f"{100 * after['tflops'] / peak['bf16']:.0f} % of bf16 | "
                   f"{before['s_per_step'] / after['s_per_step']:.1f}x faster than before | >= 3x |")
    fp32 = s2.get("fp32")
    bf16 = next((v for k, v in s2.items() if "the loop's" in k), s2.get("bf16 autocast"))
    if fp32 and bf16 and peak:
        out.append(f"| stage-2 training step (32 x 128^2) | {bf16['s_per_step']:.2f} s | "
                   f"{100 * bf16['tflops'] / peak['bf16']:.0f} % of bf16 | "
                   f"{fp32['s_per_step'] / bf16['s_per_step']:.2f}x faster than fp32 | >= 1.5x |")
    for task, row in load("precision").get("tasks", {}).items():
        f, b = row["fp32"], row["bf16"]
        out.append(f"| predict {task}, bf16 autocast vs fp32 | {b['s_per_image']:.2f} s / image | - | "
                   f"{f['s_per_image'] / b['s_per_image']:.2f}x faster (score {f['score']:.3g} -> {b['score']:.3g}) "
                   f"| quality within noise |")
    return out


def main() -> None:
    peak = load("train_speed").get("peak_tflops", {})
    lines = ["## Performance at a glance", "",
             "Each hot path on the 2-core AVX-512 + AMX machine unless its row names another CPU, assembled by "
             "`python bench/summary.py` from the sections below. Measured matmul peak (2048^2, bench/train_speed.py): "
             f"{peak.get('fp32', float('nan')):.2f} TFLOP/s fp32, {peak.get('bf16', float('nan')):.2f} TFLOP/s bf16.",
             "", "| hot path | time | share of peak | vs the reference | target (issue 12) |", "|---|---|---|---|---|",
             *rows()]
    save_results("at_a_glance", {"rows": lines[5:]}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
