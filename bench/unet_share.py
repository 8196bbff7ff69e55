"""What bounds predict's share of the machine's peak at 128^2: the UNet call itself, measured alone.

    python bench/unet_share.py [--model demo] [--compile]

At 128^2 the demo's serving call (ensemble of 8, 4 steps) is four UNet calls on 8 latents of 16^2 plus the
image encoder, the mask AE's decoder and post-processing. The whole pipeline's share of the matmul peak can
only exceed the UNet's own share where the other parts run more efficiently, and the post-processing computes
nothing (memory-bound), so the UNet's share at this shape is the practical ceiling for issue 12's
">= 35 % of the fp32 peak at 128^2". Measured here in one process: the matmul peak (2048^2), one UNet
call in eager mode (contiguous, channels_last), under torch.compile with --compile (its compile time
reported: minutes on a 2-core CPU), and the whole pipeline call as served (channels_last weights), each best
of 5 after warm-up. Writes
bench/results/unet_share.json and the `unet_share` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import bench_pipeline, machine, save_results
from torch.profiler import ProfilerActivity, profile
from train_speed import matmul_peak

from ldmseg.data.images import to_processing_size
from ldmseg.data.synthetic import SceneConfig, generate_scene


def best_seconds(fn, repeats: int = 5) -> float:
    fn()
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def flops(fn) -> float:
    """FLOPs of one call as torch.profiler counts them (convs and matmuls), as bench/predict_scale.py does."""
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        fn()
    return float(sum(e.flops or 0 for e in prof.events()))


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="demo")
    ap.add_argument("--compile", action="store_true", help="also time the UNet under torch.compile (slow to build)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    peak = matmul_peak(torch.float32)
    pipe = bench_pipeline(args.model)
    image = generate_scene([31337, 0], SceneConfig.preset("default", 128)).image
    k, steps = int(pipe.config.default_ensemble_size), pipe.default_steps("instances")
    z_img = pipe.image_encoder.encode(to_processing_size(image, 128)[None]).float().repeat_interleave(k, 0)
    unet = pipe.unet
    x = torch.randn(k, unet.config.in_channels, *z_img.shape[-2:], generator=torch.Generator().manual_seed(0))
    t = torch.full((k,), 500)
    hidden = pipe.task_embeddings("instances", k)

    def call(module=unet, latents=x):
        return lambda: module(latents, t, encoder_hidden_states=hidden)

    unet_gflop = flops(call()) / 1e9
    unet.to(memory_format=torch.contiguous_format)
    rows = {"UNet, eager, contiguous": {"seconds": best_seconds(call()), "gflop": unet_gflop}}
    unet.to(memory_format=torch.channels_last)  # the layout from_pretrained serves with (use_channels_last)
    rows["UNet, eager, channels_last"] = {"seconds": best_seconds(call()), "gflop": unet_gflop}
    if args.compile:
        compiled = torch.compile(unet)
        start = time.perf_counter()
        call(compiled)()
        build = time.perf_counter() - start
        rows["UNet, torch.compile (inductor)"] = {"seconds": best_seconds(call(compiled)), "gflop": unet_gflop,
                                                  "compile_seconds": build}
    # fp32: the fp32 peak is the yardstick (bf16 has its own section)
    whole = lambda: pipe(image, task="instances", precision="fp32", generator=torch.Generator().manual_seed(0))  # noqa: E731
    rows["whole predict call (instances)"] = {"seconds": best_seconds(whole), "gflop": flops(whole) / 1e9}
    for r in rows.values():
        r["share_fp32"] = r["gflop"] / r["seconds"] / 1e3 / peak
    eager = rows["UNet, eager, channels_last"]
    res = {"machine": machine(), "model": args.model, "peak_tflops_fp32": peak, "ensemble": k, "steps": steps,
           "latent": list(x.shape), "rows": rows,
           "unet_time_share_of_call": steps * eager["seconds"] / rows["whole predict call (instances)"]["seconds"]}
    lines = ["## What bounds predict's share of the peak at 128^2", "",
             f"One UNet call at the demo's 128^2 serving shape (latents {list(x.shape)}: ensemble of {k}), and the "
             f"whole fp32 call as served ({steps} UNet calls + image encoder + mask-AE decoder + post-processing; "
             "weights channels_last, as from_pretrained leaves them), each best of "
             f"5 after warm-up, against this run's fp32 matmul peak ({peak:.3f} TFLOP/s, 2048^2). "
             f"`python bench/unet_share.py{' --compile' if args.compile else ''}`. {machine()}.", "",
             "| call | s | GFLOP | share of fp32 peak | note |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        note = f"compile {r['compile_seconds']:.0f} s" if "compile_seconds" in r else ""
        lines.append(f"| {name} | {r['seconds']:.3f} | {r['gflop']:.2f} | {100 * r['share_fp32']:.0f} % | {note} |")
    lines += ["", f"The UNet calls are {100 * res['unet_time_share_of_call']:.0f} % of the whole call; the other "
              f"{100 * (1 - res['unet_time_share_of_call']):.0f} % computes "
              f"{max(0.0, rows['whole predict call (instances)']['gflop'] - steps * unet_gflop):.2f} GFLOP (image "
              "encoder, mask-AE decoder) beside the post-processing and the ensemble's choice, which compute none, so "
              "the UNet's own share is the practical ceiling of the whole call's."]
    save_results("unet_share", res, "\n".join(lines))
    print("\n".join(lines))
    print(np.round([r["seconds"] for r in rows.values()], 3))


if __name__ == "__main__":
    main()
