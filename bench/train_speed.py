"""Training speed of both stages on this CPU, lever by lever, against the machine's measured matmul peak.

Stage 1 (mask AE, the paper's widths, 16 masks of 256^2, synthetic default+dense): the step as it was
(hand-written channel LayerNorm, N logit maps at H/2 sampled by the loss, fp32), then each lever on top:
torch's fused layer_norm, logits at the loss's points only, channels_last, bf16 autocast. The loss curve of
the first `--curve-steps` steps (128^2 masks, batch 16, the same data and seed) is compared between the old
and the new step. Stage 2 (the demo denoiser, batch 32 at 128^2): fp32, bf16 autocast, + channels_last.
FLOPs by torch's FlopCounterMode (forward + backward; matmuls and convs); peaks by a 2048^2 matmul.

    python bench/train_speed.py [--repeats 3] [--curve-steps 200]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from common import machine, save_results
from torch.utils.flop_counter import FlopCounterMode

from ldmseg.data.bits import ids_to_bits
from ldmseg.models import layers
from ldmseg.models.mask_autoencoder import MaskAutoencoder
from ldmseg.models.mask_losses import dense_point_logits, mask_autoencoder_loss, scaled_num_points
from ldmseg.training.autoencoder import mask_dataset


class HandWrittenLayerNorm2d(torch.nn.Module):
    """The package's channel LayerNorm before this change (five elementwise passes), for the 'before' row."""

    def __init__(self, norm: layers.LayerNorm2d):
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight[:, None, None] + self.bias[:, None, None]


def hand_written_norms(module: torch.nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, layers.LayerNorm2d):
            setattr(module, name, HandWrittenLayerNorm2d(child))
        else:
            hand_written_norms(child)


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """TFLOP/s of an n^2 matmul (best of `repeats`)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e12


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


AE_LEVERS = (  # (label, fused norm, point head, channels_last, bf16)
    ("before: hand-written norm, dense logits, fp32", False, False, False, False),
    ("+ fused LayerNorm", True, False, False, False),
    ("+ logits at the loss's points only", True, True, False, False),
    ("+ channels_last", True, True, True, False),
    ("+ bf16 autocast", True, True, True, True),
    ("bf16 autocast alone (dense, hand-written norm)", False, False, False, True),
)


def ae_step(ids: torch.Tensor, fused: bool, points: bool, channels_last: bool, bf16: bool, seed: int = 0):
    """(step function, model): one AdamW step of the stage-1 loss with the given levers."""
    torch.manual_seed(seed)
    ae = MaskAutoencoder()
    if not fused:
        hand_written_norms(ae)
    if channels_last:
        ae = ae.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(ae.parameters(), lr=1e-3, weight_decay=0.05)
    n_points = scaled_num_points(112 * 112, *ids.shape[-2:])

    def step(batch: torch.Tensor = ids) -> float:
        bits = ids_to_bits(batch, 7)
        if channels_last:
            bits = bits.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            decoded, _, _ = ae(bits, latent_noise=0.2)
            logits_at = (lambda c: ae.point_logits(decoded, c)) if points else \
                dense_point_logits(ae.decoder[-1](decoded))
            loss, _ = mask_autoencoder_loss(logits_at, batch, n_points)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ae.parameters(), 3.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    return step


def flops_of(step: Callable[[], object]) -> float:
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def time_step(step: Callable[[], object], repeats: int) -> float:
    step()
    return min(_timed(step) for _ in range(repeats))


def masks(size: int, num: int, seed: int) -> torch.Tensor:
    ds = mask_dataset("synthetic", size, 128, seed, "default+dense", train=True)
    return torch.stack([ds[(i, i)]["ids"] for i in range(num)])


def loss_curves(steps: int, size: int = 128, batch: int = 16) -> dict[str, list[float]]:
    """Losses of the first `steps` steps, old step vs new step, same data and seed."""
    data = masks(size, steps * batch // 4, seed=1)  # each mask seen 4 times, in a fixed order
    curves = {}
    for name, levers in (("before", (False, False, False, False)), ("after", (True, True, True, True))):
        step = ae_step(data[:batch], *levers)
        torch.manual_seed(0)
        curves[name] = [step(data[(k * batch) % len(data):][:batch]) for k in range(steps)]
    return curves


def stage2_step(channels_last: bool, bf16: bool, loop_levers: bool = False, batch: int = 32):
    """One training step of the demo denoiser with EMA, as training/loop.py takes it; `loop_levers`: the loop's
    math attention kernel, fused AdamW and foreach EMA (else flash attention, for-loop AdamW, per-tensor EMA)."""
    import contextlib

    from diffusers.training_utils import EMAModel

    from ldmseg.models.layers import attention_kernels
    from ldmseg.training.config import DiffusionConfig
    from ldmseg.training.diffusion import DiffusionTask

    torch.manual_seed(0)
    cfg = DiffusionConfig(ae="demo", init_from="demo", batch_size=batch, prediction_type="sample",
                          loss_weighting="none", reduction="mean", self_condition_prob=0.5, unet="base")
    task = DiffusionTask(cfg)
    model = task.model.train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    items = [task.train_dataset[(i, i)] for i in range(batch)]
    data = torch.utils.data.default_collate(items)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.01, fused=loop_levers)
    ema = EMAModel(params, decay=0.999, foreach=loop_levers)
    def kernels():  # a fresh context each step (a kernel context can be entered once)
        return attention_kernels(torch.device("cpu")) if loop_levers else contextlib.nullcontext()

    def step() -> float:
        torch.manual_seed(0)  # the same timesteps and self-conditioning draws in every timed step
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16), kernels():
            loss, _ = task.loss(model, data)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.step(params)
        return loss.item()

    return step


def window_mean(values: list[float], lo: int, hi: int) -> float:
    part = values[lo:hi]
    return sum(part) / len(part)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--curve-steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    res: dict = {"machine": machine(), "threads": args.threads, "peak_tflops": peak, "ae": {}, "stage2": {}}
    ids = masks(256, 16, seed=0)
    for label, *levers in AE_LEVERS:
        step = ae_step(ids, *levers)
        sec, flops = time_step(step, args.repeats), flops_of(step)
        res["ae"][label] = {"s_per_step": sec, "gflop": flops / 1e9, "tflops": flops / sec / 1e12,
                            "bf16": levers[3]}
        print(label, res["ae"][label], flush=True)
    for label, cl, bf16, levers in (("fp32", False, False, False), ("bf16 autocast", False, True, False),
                                    ("bf16 autocast + channels_last", True, True, False),
                                    ("bf16 + math attention kernel + fused AdamW + foreach EMA (the loop's)", False,
                                     True, True)):
        step = stage2_step(cl, bf16, levers)
        sec, flops = time_step(step, args.repeats), flops_of(step)
        res["stage2"][label] = {"s_per_step": sec, "gflop": flops / 1e9, "tflops": flops / sec / 1e12, "bf16": bf16}
        print(label, res["stage2"][label], flush=True)
    if args.curve_steps:
        curves = loss_curves(args.curve_steps)
        res["curves"] = curves
        n = args.curve_steps
        res["curve_windows"] = {name: [window_mean(c, k, k + n // 4) for k in range(0, n, n // 4)]
                                for name, c in curves.items()}
    save_results("train_speed", res, "\n".join(markdown(res)))


def share(row: dict, peak: dict) -> str:
    return f"{100 * row['tflops'] / peak['bf16' if row['bf16'] else 'fp32']:.0f} %"


def markdown(res: dict) -> list[str]:
    peak = res["peak_tflops"]
    ae, s2 = res["ae"], res["stage2"]
    base_ae, base_s2 = next(iter(ae.values()))["s_per_step"], next(iter(s2.values()))["s_per_step"]
    lines = ["## Training speed (both stages, this CPU)", "",
             f"{res['machine']}, {res['threads']} threads. Measured matmul peak (2048^2): "
             f"{peak['fp32']:.2f} TFLOP/s fp32, {peak['bf16']:.2f} TFLOP/s bf16. FLOPs counted by torch's "
             "FlopCounterMode (matmuls and convolutions, forward + backward); share of peak against the fp32 or "
             "bf16 peak as the row computes. Best of a few steps; `python bench/train_speed.py`.", "",
             "Stage 1: one AdamW step of the mask AE (paper widths, 2.5 M params), 16 masks of 256x256:", "",
             "| step | s/step | x | GFLOP | TFLOP/s | share of peak |", "|---|---|---|---|---|---|"]
    lines += [f"| {k} | {v['s_per_step']:.2f} | {base_ae / v['s_per_step']:.1f} | {v['gflop']:.0f} | "
              f"{v['tflops']:.3f} | {share(v, peak)} |" for k, v in ae.items()]
    lines += ["", "Stage 2: one step of the demo denoiser (UNet `base` + learned image encoder, "
              "self-conditioning 0.5, x0 target), batch 32 at 128x128:", "",
              "| step | s/step | x | GFLOP | TFLOP/s | share of peak |", "|---|---|---|---|---|---|"]
    lines += [f"| {k} | {v['s_per_step']:.2f} | {base_s2 / v['s_per_step']:.1f} | {v['gflop']:.0f} | "
              f"{v['tflops']:.3f} | {share(v, peak)} |" for k, v in s2.items()]
    if "curve_windows" in res:
        w = res["curve_windows"]
        n = len(res["curves"]["before"])
        lines += ["", f"Stage-1 loss over the first {n} steps (128x128, batch 16, same data and seed), mean per "
                  "quarter, before vs after all levers:", "",
                  "| steps | " + " | ".join(f"{k * n // 4}-{(k + 1) * n // 4}" for k in range(4)) + " |",
                  "|---|---|---|---|---|",
                  *(f"| {name} | " + " | ".join(f"{v:.3f}" for v in vals) + " |" for name, vals in w.items())]
    return lines


if __name__ == "__main__":
    main()
