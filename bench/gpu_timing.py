"""GPU timings (run where a GPU is available): mask AE throughput at 512^2, one denoiser step and a
50-step DDIM sample of the Stable-Diffusion-1.5-shaped UNet at 512^2 (random weights: timing only),
and the demo pipeline's throughput.

    python bench/gpu_timing.py [--model demo]            # on the GPU machine
    python bench/gpu_timing.py --from-json results.json  # re-render a result file brought back from it
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from common import machine, save_results

from ldmseg.commands.predict import load_pipeline
from ldmseg.diffusion.schedule import make_sampler
from ldmseg.models.denoiser import build_unet
from ldmseg.models.loading import load_mask_autoencoder
from ldmseg.weights import resolve_model_path


def timed(fn, repeats: int = 10) -> float:
    """Seconds per call after two warm-up calls, synchronising the GPU."""
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats


@torch.no_grad()
def ae_masks_per_s(path: str, size: int = 512, batch: int = 16, dtype=torch.float32) -> float:
    ae = load_mask_autoencoder(resolve_model_path(path, "mask_autoencoder")).cuda().eval()
    ids = torch.randint(0, ae.num_ids, (batch, size, size), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype != torch.float32):
        sec = timed(lambda: ae.decode(ae.encode_ids(ids), size=(size, size)).argmax(1))
    return batch / sec


@torch.no_grad()
def sd15_timings(unet: torch.nn.Module, batch: int, steps: int = 50) -> dict:
    x = torch.randn(batch, 12, 64, 64, device="cuda", dtype=torch.half)
    hidden = torch.randn(batch, 1, 768, device="cuda", dtype=torch.half)
    step = timed(lambda: unet(x, torch.full((batch,), 500, device="cuda"), encoder_hidden_states=hidden))
    sched = make_sampler("ddim", "epsilon", "trailing")

    def sample() -> None:
        sched.set_timesteps(steps, device="cuda")
        z = x[:, :4]
        for t in sched.timesteps:
            out = unet(torch.cat([z, x[:, 4:]], 1), t, encoder_hidden_states=hidden).sample
            z = sched.step(out, t, z).prev_sample

    return {"params_m": sum(p.numel() for p in unet.parameters()) / 1e6, "step_ms": 1000 * step,
            f"sample_{steps}_s": timed(sample, repeats=3)}


def measure(model: str) -> dict:
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    res: dict = {"machine": machine(), "gpu": torch.cuda.get_device_name()}
    res["ae_512_fp32"] = ae_masks_per_s(model)
    res["ae_512_bf16"] = ae_masks_per_s(model, dtype=torch.bfloat16)
    unet = build_unet("sd15", 12, 4, 64).cuda().half().eval()
    res["sd15_b1"] = sd15_timings(unet, 1)
    res["sd15_b8"] = sd15_timings(unet, 8)
    pipe = load_pipeline(model).to("cuda")
    images = [torch.rand(3, 128, 128) * 2 - 1 for _ in range(64)]
    res["demo_images_per_s_10_steps"] = 64 / timed(lambda: pipe(images, num_inference_steps=10, ensemble_size=1),
                                                     repeats=3)
    return res


def render(res: dict) -> str:
    b1, b8 = res["sd15_b1"], res["sd15_b8"]
    return "\n".join([
        "## GPU timings", "", f"{res['gpu']}; {res['machine']}. `python bench/gpu_timing.py`.", "",
        "| what | result |", "|---|---|",
        f"| demo mask AE encode+decode+argmax at 512x512, batch 16, fp32/TF32 | {res['ae_512_fp32']:.0f} masks/s |",
        f"| same, bf16 autocast | {res['ae_512_bf16']:.0f} masks/s |",
        f"| SD-1.5-shaped UNet ({b1['params_m']:.0f} M params, fp16), one step at 512x512 (64x64 latents), "
        f"batch 1 / 8 | {b1['step_ms']:.1f} / {b8['step_ms']:.1f} ms |",
        f"| same, 50-step DDIM sample (UNet + scheduler), batch 1 / 8 | {b1['sample_50_s']:.2f} / "
        f"{b8['sample_50_s']:.2f} s |",
        f"| demo pipeline at 128x128, 10 steps, batch 64 | {res['demo_images_per_s_10_steps']:.0f} images/s |",
        "", "Batch 1 and batch 8 take about the same time per UNet step, which suggests that per-step host "
        "overhead (eager PyTorch, no CUDA graphs or compilation) dominates at these batch sizes; not profiled."])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="demo")
    ap.add_argument("--from-json", default=None)
    args = ap.parse_args()
    res = json.loads(open(args.from_json).read()) if args.from_json else measure(args.model)
    markdown = render(res)
    save_results("gpu_timing", res, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
