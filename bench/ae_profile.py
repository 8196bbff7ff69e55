"""Where one mask-AE training step spends its time (issue 15, item 1): scene generation, bit encoding, the
encoder at full resolution, the decoder trunk (residual block, upsampling, refinement) to H/2, the N-logit head
with point sampling and the losses, and the optimiser; time, FLOPs and achieved TFLOP/s against this CPU's
measured matmul peak.

    python bench/ae_profile.py [--ae demo]

The graph is cut between the parts (detach + requires_grad), so each part's forward and backward are timed on
their own; the sum is one full step. Two recipes: the v2 AE's (32 crops of 128^2 from 4 masks, bf16 autocast,
channels_last) and whole 256^2 masks x 16. Writes bench/results/ae_profile.json and the `ae_profile` section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
from common import machine, save_results
from torch.utils.flop_counter import FlopCounterMode
from train_speed import matmul_peak

from ldmseg.data.bits import ids_to_bits
from ldmseg.data.datasets import SampleConfig, SyntheticDataset
from ldmseg.data.synthetic import SceneConfig
from ldmseg.models.loading import load_mask_autoencoder
from ldmseg.models.mask_losses import mask_autoencoder_loss, scaled_num_points
from ldmseg.weights import resolve_model_path

PARTS = ("scene generation", "bit encoding", "encoder (full resolution)", "decoder trunk to H/2",
         "head at points + losses", "optimiser step")


def batch_ids(size: int, masks: int, crop: int, crops_per_mask: int, seed: int) -> tuple[torch.Tensor, float]:
    """[B, h, w] training ids (crops if crop > 0) and the seconds spent generating them."""
    start = time.perf_counter()
    ds = SyntheticDataset(SceneConfig.preset("dense", size), SampleConfig(size=size, num_ids=128), seed=seed,
                          length=masks, render=False)
    ids = torch.stack([ds[i]["ids"] for i in range(masks)])
    seconds = time.perf_counter() - start
    if crop:
        gen = torch.Generator().manual_seed(seed)
        tiles = []
        for m in ids:
            for _ in range(crops_per_mask):
                y, x = torch.randint(0, size - crop + 1, (2,), generator=gen).tolist()
                tiles.append(m[y:y + crop, x:x + crop])
        ids = torch.stack(tiles)
    return ids, seconds


def profile_step(ae, ids: torch.Tensor, bf16: bool, channels_last: bool, opt, count: bool = False
                 ) -> dict[str, tuple[float, float]]:
    """{part: (seconds, FLOPs)} of one step, forward and backward of each part timed separately; FLOPs only when
    `count` (the counter's per-op overhead would distort the times of the many small ops of the losses)."""
    out: dict[str, list[float]] = {p: [0.0, 0.0] for p in PARTS}
    layout = torch.channels_last if channels_last else torch.contiguous_format

    def run(part: str, fn):
        with FlopCounterMode(display=False) if count else contextlib.nullcontext() as counter:
            start = time.perf_counter()
            result = fn()
            out[part][0] += time.perf_counter() - start
        out[part][1] += counter.get_total_flops() if count else 0
        return result

    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        bits = run("bit encoding", lambda: ids_to_bits(ids, ae.config.num_bits).contiguous(memory_format=layout))
        z = run("encoder (full resolution)", lambda: ae.encoder(bits))
        z_cut = z.detach().requires_grad_()
        feats = run("decoder trunk to H/2", lambda: ae.decode_features(z_cut))
        f_cut = feats.detach().requires_grad_()
        points = scaled_num_points(112 * 112, *ids.shape[-2:])
        loss = run("head at points + losses", lambda: mask_autoencoder_loss(
            lambda c: ae.point_logits(f_cut, c), ids, points)[0])
    run("head at points + losses", loss.backward)
    run("decoder trunk to H/2", lambda: feats.backward(f_cut.grad))
    run("encoder (full resolution)", lambda: z.backward(z_cut.grad))
    run("optimiser step", opt.step)
    opt.zero_grad(set_to_none=True)
    return {p: (s, f) for p, (s, f) in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ae", default="demo")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    res: dict = {"machine": machine(), "peak_tflops": peak, "recipes": {}}
    recipes = {"v2 recipe: 32 crops of 128^2 (4 masks of 256^2), bf16, channels_last": (256, 4, 128, 8, True, True),
               "whole masks: 16 x 256^2, bf16": (256, 16, 0, 0, True, False)}
    for name, (size, masks, crop, per_mask, bf16, cl) in recipes.items():
        ae = load_mask_autoencoder(resolve_model_path(args.ae, "mask_autoencoder")).train()
        if cl:
            ae = ae.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(ae.parameters(), lr=1e-4, fused=True)
        flops = {p: f for p, (_, f) in profile_step(ae, batch_ids(size, masks, crop, per_mask, 0)[0], bf16, cl, opt,
                                                        count=True).items()}
        best: dict[str, float] = {}
        for k in range(args.repeats + 1):
            ids, gen_seconds = batch_ids(size, masks, crop, per_mask, seed=k)
            parts = {p: sec for p, (sec, _) in profile_step(ae, ids, bf16, cl, opt).items()}
            parts["scene generation"] = gen_seconds
            if k:  # the first step warms up
                best = {p: min(best.get(p, v), v) for p, v in parts.items()}
        res["recipes"][name] = {p: {"seconds": sec, "gflop": flops[p] / 1e9,
                                    "tflops": flops[p] / sec / 1e12 if sec else 0.0} for p, sec in best.items()}
        print(name, res["recipes"][name], flush=True)
    lines = ["## Stage 1: where a training step spends its time", "",
             "One AdamW step of the shipped mask AE (`demo`), each part's forward + backward timed on its own (the "
             "graph cut between parts), best of "
             f"{args.repeats}; FLOPs by torch's FlopCounterMode; share against the bf16 matmul peak "
             f"({peak['bf16']:.2f} TFLOP/s; fp32 {peak['fp32']:.2f}). `python bench/ae_profile.py`. {machine()}.", ""]
    for name, parts in res["recipes"].items():
        total = sum(v["seconds"] for v in parts.values())
        lines += [f"{name}: {total:.2f} s per step", "", "| part | s | share of the step | GFLOP | TFLOP/s | "
                  "share of bf16 peak |", "|---|---|---|---|---|---|"]
        for part in PARTS:
            v = parts[part]
            lines.append(f"| {part} | {v['seconds']:.3f} | {100 * v['seconds'] / total:.0f} % | {v['gflop']:.1f} | "
                         f"{v['tflops']:.3f} | {100 * v['tflops'] / peak['bf16']:.0f} % |")
        lines.append("")
    save_results("ae_profile", res, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
