"""The authors' released model, full size, through `ldmseg convert-original`, on this machine: a checkpoint in
their exact layout with random values of the real shapes (SD-1.4's UNet with a 12-channel conv_in and no
cross-attention, ~860 M parameters; their 2 M-parameter mask AE) and an SD directory with SD's UNet config and a
random SD-shaped VAE, converted, then one 512x512 prediction per setting, each in its own process (peak RSS per
setting): the authors' defaults (50 DDIM steps, fp32), bf16, the fast preset (20 steps), 4 steps, an ensemble.
Beside them one UNet call timed alone (fp32 / bf16, with the bypassed cross-attention kept or dropped) against
the matmul peaks measured in the same process.

    python bench/original_full_size.py [--work /tmp/ldmseg-original] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import machine, save_results
from full_size import SD_VAE_CONFIG
from train_speed import matmul_peak

SD14_UNET = {  # CompVis/stable-diffusion-v1-4's unet/config.json
    "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280], "center_input_sample":
    False, "cross_attention_dim": 768, "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-5, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3}
SETTINGS = {  # name: (steps, precision, ensemble, UNet weights kept in bf16 as the CLI does when serving bf16)
    "authors' default: 50 steps, fp32": (50, "fp32", 1, False),
    "50 steps, bf16": (50, "bf16", 1, True),
    "fast preset: 20 steps, bf16": (20, "bf16", 1, True),
    "4 steps, bf16": (4, "bf16", 1, True),
    "4 steps, bf16, ensemble of 4": (4, "bf16", 4, True),
}
MEMORY_SETTINGS = {  # --memory-only: one sampling step each, for the peak RSS of each way of serving
    "fp32": (1, "fp32", 1, False),
    "bf16 autocast over float32 weights (before)": (1, "bf16", 1, False),
    "bf16, UNet weights kept in bf16 (predict / inpaint / app now)": (1, "bf16", 1, True),
}
ONE_CALL_SETTINGS = {  # --one-call: what a one-step model (`ldmseg distill`) costs per image: one UNet call
    "one call, fp32": (1, "fp32", 1, False),
    "one call, bf16 (where native)": (1, "bf16", 1, True),
}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def write_inputs(work: Path) -> tuple[Path, Path]:
    """An SD directory (UNet config, random SD-shaped VAE) and their LDM file with random values."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    sd, ldm = work / "sd", work / "ldmseg.pt"
    if (sd / "vae").exists() and ldm.exists():
        return sd, ldm
    torch.manual_seed(0)
    AutoencoderKL(**{k: v for k, v in SD_VAE_CONFIG.items()}).save_pretrained(sd / "vae")
    (sd / "unet").mkdir(parents=True, exist_ok=True)
    (sd / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel", **SD14_UNET}))
    unet = UNet2DConditionModel(**{**SD14_UNET, "in_channels": 12})
    state = {k: v * 0.5 for k, v in unet.state_dict().items()
             if not (".transformer_blocks." in k and (".attn2." in k or ".norm2." in k))}
    state["new_conv.weight"], state["new_conv.bias"] = state["conv_in.weight"], state["conv_in.bias"]
    from ldmseg.models.original_autoencoder import OriginalMaskAutoencoder

    ae = OriginalMaskAutoencoder().state_dict()
    torch.save({"step": 0, "epoch": 0, "vae_semseg": ae, "unet": state, "ema": None, "opt": None, "p": {},
                "scaler": None}, ldm)
    return sd, ldm


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so a timing covers the call and not just its launch."""
    if device == "cuda":
        torch.cuda.synchronize()


def run_child(args: list[str]) -> dict:
    res = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=3600)
    if res.returncode:
        return {"error": (res.stderr.strip().splitlines() or ["killed"])[-1][:300]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def convert(work: Path) -> dict:
    from ldmseg.cli import main

    sd, ldm = write_inputs(work)
    out = work / "converted"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    start = time.perf_counter()
    code = main(["convert-original", "--ldm", str(ldm), "--stable-diffusion", str(sd), "--out", str(out)])
    return {"exit": code, "seconds": time.perf_counter() - start, "peak_rss_gb": peak_rss_gb()}


def load(work: Path, device: str):
    from ldmseg.pipeline import LDMSegPipeline

    pipe = LDMSegPipeline.from_pretrained(work / "converted").to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_image():
    from ldmseg.data.synthetic import SceneConfig, generate_scene

    return generate_scene([4242, 0], SceneConfig.preset("coco", 512)).image


@torch.no_grad()
def predict(work: Path, name: str, device: str) -> dict:
    steps, precision, k, keep_bf16 = {**SETTINGS, **MEMORY_SETTINGS, **ONE_CALL_SETTINGS}[name]
    pipe = load(work, device)
    if keep_bf16:
        pipe.keep_unet_in_bf16()
    calls: list[float] = []
    forward = pipe.unet.forward

    def timed(*a, **kw):
        start = time.perf_counter()
        out = forward(*a, **kw)
        synchronize(device)
        calls.append(time.perf_counter() - start)
        return out

    pipe.unet.forward = timed
    image = test_image()
    start = time.perf_counter()
    out = pipe(image, num_inference_steps=steps, precision=precision, ensemble_size=k,
               generator=torch.Generator().manual_seed(0))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "unet_calls": len(calls), "unet_seconds": sum(calls),
            "overhead": seconds / sum(calls) - 1, "segments": len(out.segments_info[0]), "peak_rss_gb": peak_rss_gb()}


@torch.no_grad()
def unet_call(work: Path, device: str) -> dict:
    """One UNet call at 64x64 latents, best of 3, fp32 and bf16, cross-attention kept (zeroed) or dropped."""
    from torch.profiler import ProfilerActivity, profile

    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)} if device == "cpu" else {}
    pipe = load(work, device)
    unet = pipe.unet
    x = torch.randn(1, 12, 64, 64, device=device).contiguous(memory_format=torch.channels_last)
    t = torch.tensor([500], device=device)
    hidden = pipe.task_embeddings("instances", 1).to(device)

    def best(bf16: bool) -> float:
        """Best of 3 calls inside one autocast region after a warm-up call, as the pipeline's sampling loop runs
        them (autocast casts the weights to bf16 once per region and keeps the copies)."""
        times = []
        with torch.autocast(device, torch.bfloat16, enabled=bf16):
            unet(x, t, encoder_hidden_states=hidden)
            synchronize(device)
            for _ in range(3):
                start = time.perf_counter()
                unet(x, t, encoder_hidden_states=hidden)
                synchronize(device)
                times.append(time.perf_counter() - start)
        return min(times)

    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        unet(x, t, encoder_hidden_states=hidden)
    gflop = sum(e.flops or 0 for e in prof.events()) / 1e9
    rows = {"fp32, attn2 zeroed": best(False), "bf16, attn2 zeroed": best(True)}
    pipe.keep_unet_in_bf16()
    rows["bf16 weights (served), attn2 zeroed"] = best(True)
    with torch.autocast(device, torch.bfloat16), profile(activities=[ProfilerActivity.CPU]) as prof:
        unet(x, t, encoder_hidden_states=hidden)
    top_ops = [(e.key, e.self_cpu_time_total / 1e6) for e in
               sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:8]]
    unet.float()
    dropped = drop_bypassed_cross_attention(unet)
    rows.update({"fp32, attn2 dropped": best(False), "bf16, attn2 dropped": best(True)})
    return {"gflop": gflop, "dropped_blocks": dropped, "peaks_tflops": peaks, "seconds": rows,
            "served_bf16_top_ops": top_ops, "peak_rss_gb": peak_rss_gb()}


@torch.no_grad()
def layouts_and_compile(work: Path, device: str) -> dict:
    """One UNet call at 64x64 latents per way of running the served UNet, all in this process at this thread
    count: NCHW vs channels_last weights, eager vs torch.compile (inductor, with and without weight freezing), and
    the same in bf16 weights where the CPU has native bf16. Compile time (first call) is reported beside."""
    import torch._inductor.config as inductor_config

    from ldmseg.models.layers import native_bf16

    pipe = load(work, device)
    unet = pipe.unet
    hidden = pipe.task_embeddings("instances", 1).to(device)
    t = torch.tensor([500], device=device)
    rows: dict[str, dict] = {}

    def measure(name: str, model, layout, dtype=torch.float32) -> None:
        x = torch.randn(1, 12, 64, 64, device=device, dtype=dtype).contiguous(memory_format=layout)
        start = time.perf_counter()
        model(x, t, encoder_hidden_states=hidden.to(dtype))
        synchronize(device)
        first = time.perf_counter() - start
        times = []
        for _ in range(3):
            start = time.perf_counter()
            model(x, t, encoder_hidden_states=hidden.to(dtype))
            synchronize(device)
            times.append(time.perf_counter() - start)
        rows[name] = {"seconds": min(times), "first_call_seconds": first}
        print(name, rows[name], file=sys.stderr)

    dtypes = [torch.float32] + ([torch.bfloat16] if device != "cpu" or native_bf16(torch.device(device)) else [])
    for dtype in dtypes:
        tag = "fp32" if dtype == torch.float32 else "bf16 weights"
        unet.to(dtype)
        unet.to(memory_format=torch.contiguous_format)
        measure(f"{tag}, NCHW, eager", unet, torch.contiguous_format, dtype)
        unet.to(memory_format=torch.channels_last)
        measure(f"{tag}, channels_last, eager (served)", unet, torch.channels_last, dtype)
        for freezing in (False, True):
            torch._dynamo.reset()
            inductor_config.freezing = freezing
            measure(f"{tag}, channels_last, torch.compile{' + freezing' if freezing else ''}", torch.compile(unet),
                    torch.channels_last, dtype)
    inductor_config.freezing = False
    return {"threads": torch.get_num_threads(), "rows": rows, "peak_rss_gb": peak_rss_gb()}


def drop_bypassed_cross_attention(unet) -> int:
    """attn2 = norm2 = None where attn2's output projection is all zero (diffusers then skips them): what the
    bypass costs. Not done when serving: a UNet saved without those tensors would load them random."""
    dropped = 0
    for block in unet.modules():
        attn = getattr(block, "attn2", None)
        if attn is not None and not attn.to_out[0].weight.any() and not attn.to_out[0].bias.any():
            block.attn2, block.norm2 = None, None
            dropped += 1
    return dropped


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/ldmseg-original-bench")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--child", default=None)
    ap.add_argument("--memory-only", action="store_true", help="one step per way of serving: peak RSS only")
    ap.add_argument("--one-call", action="store_true",
                    help="one 512x512 prediction at one UNet call (a one-step model's cost), fp32 and native bf16")
    ap.add_argument("--compile-only", action="store_true",
                    help="one UNet call per layout and eager / torch.compile, in one process at this thread count")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.child == "convert":
        print(json.dumps(convert(work)))
        return
    if args.child == "unet":
        print(json.dumps(unet_call(work, args.device)))
        return
    if args.child == "compile":
        print(json.dumps(layouts_and_compile(work, args.device)))
        return
    if args.child:
        print(json.dumps(predict(work, args.child, args.device)))
        return
    base = ["--work", str(work), "--device", args.device]
    if args.memory_only:
        memory_only(base, args.device)
        return
    if args.compile_only:
        compile_only(base, args.device)
        return
    if args.one_call:
        one_call(base, args.device)
        return
    results = {"machine": machine() if args.device == "cpu" else torch.cuda.get_device_name(),
               "threads": torch.get_num_threads(), "convert": run_child([*base, "--child", "convert"]),
               "unet_call": run_child([*base, "--child", "unet"]), "predict": {}}
    for name in SETTINGS:
        results["predict"][name] = run_child([*base, "--child", name])
        print(name, results["predict"][name], file=sys.stderr)
    save_results(f"original_full_size_{args.device}", results, table(results))


def run_settings(base: list[str], device: str, names: list[str]) -> dict:
    """Convert once, then one 512x512 prediction per named setting, each in its own process (its own peak RSS)."""
    results = {"machine": machine() if device == "cpu" else torch.cuda.get_device_name(),
               "threads": torch.get_num_threads(), "convert": run_child([*base, "--child", "convert"]), "predict": {}}
    for name in names:
        results["predict"][name] = run_child([*base, "--child", name])
        print(name, results["predict"][name], file=sys.stderr)
    return results


def setting_rows(results: dict, cells) -> list[str]:
    """One table row per setting: its `cells(prediction)`, or the error it failed with."""
    return [f"| {name} | {cells(p)} |" if "error" not in p else f"| {name} | failed: {p['error']} |"
            for name, p in results["predict"].items()]


def section(title: str, intro: str, header: str, rows: list[str]) -> str:
    """A benchmarks section: its title, what it measured, and its table."""
    return "\n".join([f"## {title}", "", intro, "", header, "|---" * (header.count("|") - 1) + "|", *rows])


def memory_only(base: list[str], device: str) -> None:
    """Peak RSS of one 1-step 512x512 prediction per way of serving (fp32, bf16 autocast, bf16 weights), each in
    its own process; writes the original_memory_<device> section."""
    results = run_settings(base, device, list(MEMORY_SETTINGS))
    rows = setting_rows(results, lambda p: f"{p['peak_rss_gb']:.2f} | {p['seconds']:.1f}")
    md = section(f"The authors' model, full size: peak memory per way of serving ({results['machine']})",
                 "`bench/original_full_size.py --memory-only`: the converted full-size model (random weights of the "
                 "released shapes, 860 M-parameter UNet), one 512x512 prediction with one sampling step, each way in "
                 "its own process; peak RSS includes loading. Time is not comparable across CPUs: without native "
                 "bf16 (AVX512-BF16 / AMX) bf16 is emulated and slower than fp32.",
                 "| serving | peak RSS, GB | s (1 step) |", rows)
    save_results(f"original_memory_{device}", results, md)
    print(md)


def one_call(base: list[str], device: str) -> None:
    """A whole 512x512 prediction at one UNet call (what a one-step model serves), fp32 and, where the hardware has
    it natively, bf16, each in its own process; writes the original_one_call_<device> section."""
    from ldmseg.models.layers import native_bf16

    names = [n for n in ONE_CALL_SETTINGS if "bf16" not in n or native_bf16(torch.device(device))]
    results = run_settings(base, device, names)
    rows = setting_rows(results, lambda p: f"{p['seconds']:.2f} | {p['unet_seconds']:.2f} | {p['peak_rss_gb']:.2f}")
    title = f"The authors' model, full size, at one UNet call ({results['machine']}, {results['threads']} threads)"
    md = section(title,
                 "`bench/original_full_size.py --one-call`: the converted full-size model (random weights of the "
                 "released shapes) served as a one-step model serves (`ldmseg distill`): one 512x512 image, one UNet "
                 "call, each setting in its own process (bf16 only where the CPU has it natively).",
                 "| setting | whole prediction, s | the UNet call, s | peak RSS, GB |", rows)
    save_results(f"original_one_call_{device}", results, md)
    print(md)


def compile_only(base: list[str], device: str) -> None:
    """The served UNet's call per memory layout and eager vs torch.compile; writes the original_compile_<device>
    section."""
    results = {"machine": machine() if device == "cpu" else torch.cuda.get_device_name(),
               "convert": run_child([*base, "--child", "convert"]),
               "unet": run_child([*base, "--child", "compile"])}
    md = compile_table(results)
    save_results(f"original_compile_{device}", results, md)
    print(md)


def compile_table(results: dict) -> str:
    unet = results["unet"]
    rows = [f"| {name} | {r['seconds']:.2f} | {r['first_call_seconds']:.0f} |"
            for name, r in unet.get("rows", {}).items()]
    return "\n".join([f"## The authors' model, full size: the UNet call per layout, eager vs torch.compile "
                      f"({results['machine']}, {unet.get('threads', '?')} threads)", "",
                      "`bench/original_full_size.py --compile-only`: the converted full-size UNet (random weights of "
                      "the released shapes, 860 M parameters), one call at 64x64 latents (a 512x512 image), best of 3 "
                      "after a first call that includes compiling; all rows in one process. torch.compile is "
                      "inductor's default mode; freezing (`torch._inductor.config.freezing`) also folds the "
                      "weights in as constants and lets oneDNN prepack them. bf16 rows only where bf16 is native.",
                      *([f"Failed: {unet['error']}"] if "error" in unet else []), "",
                      "| UNet | s per call | first call, s |", "|---|---|---|", *rows, "",
                      f"Peak RSS of the process: {unet.get('peak_rss_gb', float('nan')):.1f} GB."])


def table(r: dict) -> str:
    call = r["unet_call"]
    lines = [f"## The authors' model, full size, converted ({r['machine']}, {r['threads']} threads)", "",
             "`bench/original_full_size.py`: random weights of the released model's shapes (SD-1.4 UNet with 12 "
             "input channels, 860 M parameters; SD's VAE encoder; their 2 M-parameter mask AE) through "
             "`ldmseg convert-original`, one 512x512 image per setting, each setting in its own process. "
             f"Conversion: {r['convert'].get('seconds', float('nan')):.0f} s, peak RSS "
             f"{r['convert'].get('peak_rss_gb', float('nan')):.1f} GB.", ""]
    if "seconds" in call:
        peaks = call["peaks_tflops"]
        lines += ["| one UNet call, 64x64 latents | s | share of the matmul peak |", "|---|---|---|"]
        for name, s in call["seconds"].items():
            peak = peaks.get("bf16" if name.startswith("bf16") else "fp32")
            share = f"{100 * call['gflop'] / s / 1e3 / peak:.0f} % of {peak:.2f} TFLOP/s" if peak else "-"
            lines.append(f"| {name} | {s:.2f} | {share} |")
        lines.append(f"\n{call['gflop']:.0f} GFLOP per call (torch.profiler).\n")
        if call.get("served_bf16_top_ops"):
            lines.append("Where the served bf16 call spends its time (torch.profiler, self CPU time): " + ", ".join(
                f"{name} {seconds:.2f} s" for name, seconds in call["served_bf16_top_ops"]) + ".\n")
    lines += ["| setting | whole prediction, s | UNet calls | UNet call's share of the peak above | overhead beyond "
              "the UNet calls | peak RSS, GB |", "|---|---|---|---|---|---|"]
    for name, p in r["predict"].items():
        if "error" in p:
            lines.append(f"| {name} | failed: {p['error']} | | | | |")
            continue
        per_call = p["unet_seconds"] / p["unet_calls"]
        k = SETTINGS[name][2] if name in SETTINGS else 1
        peak = call.get("peaks_tflops", {}).get("bf16" if "bf16" in name else "fp32")
        share = f"{100 * k * call['gflop'] / per_call / 1e3 / peak:.0f} %" if peak and "gflop" in call else "-"
        lines.append(f"| {name} | {p['seconds']:.1f} | {p['unet_calls']} x {per_call:.2f} s | {share} | "
                     f"{100 * p['overhead']:.0f} % | {p['peak_rss_gb']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
