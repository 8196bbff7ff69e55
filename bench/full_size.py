"""The paper-sized path on this CPU: a Stable-Diffusion-1.5-shaped UNet (random weights, conv_in widened
to mask + image + self-conditioning channels) with an SD-shaped VAE encoder as f_i, at 512x512, and the
same with the paper's Table-2 f_i, a ViT-B/16 (random weights, fine-tuned with the UNet, 64 output channels).
Times one training step (forward, backward, AdamW) with and without gradient checkpointing, and one
4-step sample through LDMSegPipeline; peak memory is the process's peak RSS, each case in its own
process so that the peaks do not mix.

    python bench/full_size.py
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from common import machine, save_results

SIZE = 512
VIT_CHANNELS = 64
CASES = ("train", "train-checkpointing", "sample", "train-vit", "sample-vit")
SD_VAE_CONFIG = {  # Stable Diffusion 1.5's VAE shape (the decoder is dropped by SDVAEImageEncoder)
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
    "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "sample_size": SIZE, "scaling_factor": 0.18215}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def build_image_encoder(kind: str):
    from ldmseg.models.image_encoder import SDVAEImageEncoder, ViTImageEncoder

    if kind == "vit":
        from transformers import ViTConfig

        return ViTImageEncoder(vit_config=ViTConfig().to_dict(), out_channels=VIT_CHANNELS)  # ViT-B/16's shape
    return SDVAEImageEncoder(vae_config=SD_VAE_CONFIG).eval()


def build_denoiser(gradient_checkpointing: bool, encoder: str = "sd-vae"):
    from ldmseg.diffusion.objective import DiffusionObjective, ObjectiveConfig
    from ldmseg.models.denoiser import TaskEmbeddings, build_unet, widen_conv_in
    from ldmseg.training.stage2_model import Denoiser

    latent = SIZE // 8
    image_encoder = build_image_encoder(encoder)
    unet = widen_conv_in(build_unet("sd15", 4, 4, latent), 8 + image_encoder.out_channels)  # + mask, self-cond.
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    tasks = TaskEmbeddings(("panoptic",), 1, unet.config.cross_attention_dim)
    objective = DiffusionObjective(ObjectiveConfig())  # the paper's: epsilon, weighting, self-conditioning
    return Denoiser(unet, image_encoder, tasks, objective, 4)


def train_step(gradient_checkpointing: bool, encoder: str = "sd-vae") -> dict:
    torch.manual_seed(0)
    model = build_denoiser(gradient_checkpointing, encoder).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1)
    images = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    z0 = torch.randn(1, 4, SIZE // 8, SIZE // 8)
    valid = torch.ones(1, SIZE, SIZE, dtype=torch.bool)
    t = time.perf_counter()
    loss, _ = model(images, z0, valid, torch.zeros(1, dtype=torch.long))  # the one task, index 0
    loss.backward()
    backward_peak = peak_rss_gb()  # before AdamW allocates its two moments per parameter
    opt.step()
    return {"seconds": time.perf_counter() - t, "trainable_params_m": sum(p.numel() for p in params) / 1e6,
            "peak_rss_after_backward_gb": backward_peak}


def sample(encoder: str = "sd-vae", steps: int = 4) -> dict:
    from ldmseg.diffusion.schedule import make_sampler
    from ldmseg.models.loading import load_mask_autoencoder
    from ldmseg.pipeline import LDMSegPipeline
    from ldmseg.weights import resolve_model_path

    torch.manual_seed(0)
    model = build_denoiser(False, encoder).eval()
    pipe = LDMSegPipeline(model.unet, model.image_encoder, load_mask_autoencoder(resolve_model_path("demo",
                          "mask_autoencoder")), make_sampler("ddim", "epsilon", "trailing"), model.task_embeddings,
                          scale_factor=0.2, self_condition=True, default_processing_resolution=SIZE)
    image = (torch.rand(SIZE, SIZE, 3) * 255).byte().numpy()
    t = time.perf_counter()
    pipe(image, num_inference_steps=steps, generator=torch.Generator().manual_seed(0))
    return {"seconds": time.perf_counter() - t, "steps": steps}


def run_case(case: str) -> dict:
    """One case in a fresh process; returns its timings and peak RSS (or why it failed)."""
    proc = subprocess.run([sys.executable, __file__, "--case", case], capture_output=True, text=True)
    if proc.returncode != 0:
        reason = "killed (out of memory?)" if proc.returncode < 0 else proc.stderr.strip().splitlines()[-1]
        return {"failed": reason}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=CASES)
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.case:
        encoder = "vit" if args.case.endswith("-vit") else "sd-vae"
        if args.case.startswith("sample"):
            out = sample(encoder)
        else:
            out = train_step(args.case == "train-checkpointing", encoder)
        out["peak_rss_gb"] = peak_rss_gb()
        print(json.dumps(out))
        return
    res = {"machine": machine(), "size": SIZE}
    for case in CASES:
        res[case] = run_case(case)
        print(case, res[case], flush=True)

    def cell(r: dict) -> str:
        if "failed" in r:
            return f"{r['failed']} | |"
        before = f"{r['peak_rss_after_backward_gb']:.1f} GB / " if "peak_rss_after_backward_gb" in r else ""
        return f"{r['seconds']:.1f} s | {before}{r['peak_rss_gb']:.1f} GB"

    lines = ["## Full-size path on the CPU", "",
             f"Stable-Diffusion-1.5-shaped UNet (random weights, conv_in widened to 12 channels: noisy mask + image "
             f"+ self-conditioning) and SD-shaped VAE encoder as f_i, at {SIZE}x{SIZE}, batch 1, fp32. "
             f"Peak memory = the process's peak RSS (model, AdamW state, activations). {machine()}. "
             "`python bench/full_size.py`.", "",
             "| what | time | peak memory (after backward / after the optimizer step) |", "|---|---|---|",
             f"| one training step (forward + backward + AdamW), no gradient checkpointing | {cell(res['train'])} |",
             f"| same, gradient checkpointing | {cell(res['train-checkpointing'])} |",
             f"| one 4-step DDIM sample through LDMSegPipeline (f_i, UNet, mask AE decode) | {cell(res['sample'])} |",
             f"| one training step, ViT-B/16 as f_i (fine-tuned; UNet conv_in 4 + {VIT_CHANNELS} + 4) "
             f"| {cell(res['train-vit'])} |",
             f"| one 4-step DDIM sample, ViT-B/16 as f_i | {cell(res['sample-vit'])} |"]
    save_results("full_size", res, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
