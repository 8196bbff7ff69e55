"""Copy trained models into src/ldmseg/weights/demo (the layout `demo_model_dir()` serves).

    python scripts/package_demo.py --pipeline runs/mt/model            # a pipeline with its own AEs (multi-task)
    python scripts/package_demo.py --ae runs/demo-ae/model [--pipeline runs/demo-ldmseg/model]  # swap in an AE
    python scripts/package_demo.py --one-step runs/one-step/model     # `ldmseg distill`'s demo -> demo-one-step

Weights are stored as float16 to halve the package (diffusers loads them back into float32 models).
The pipeline is saved with the demo's serving defaults (SERVING: sampler, steps, per-task steps, ensemble
size), chosen on bench/diffusion.py's and bench/sampling_sweep.py's scenes; its id pruning stays what
scripts/tune_min_core.py wrote.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "ldmseg" / "weights"
DEMO = WEIGHTS / "demo"
SERVING = {"sampler": "dpm++", "spacing": "trailing", "steps": 4, "ensemble_size": 8, "precision": "auto",
           "task_steps": {"depth": 1}}  # depth: one step measured best (bench/sampling_sweep.py, tuning scenes)


def halve(directory: Path) -> None:
    """Rewrite every safetensors file under `directory` with float32 tensors as float16."""
    for f in directory.rglob("*.safetensors"):
        tensors = {k: v.half() if v.dtype == torch.float32 else v for k, v in load_file(f).items()}
        save_file(tensors, f, metadata={"format": "pt"})


def drop_local_paths(directory: Path) -> None:
    """Remove the `_name_or_path` diffusers records in configs and model_index.json: a path on the machine
    that trained it."""
    for f in directory.rglob("*.json"):
        config = json.loads(f.read_text())
        if config.pop("_name_or_path", None) is not None:
            f.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def save_for_serving(pipeline: str, directory: Path) -> None:
    """Save a trained pipeline to `directory` with the SERVING sampler, step counts and ensemble size."""
    from ldmseg.pipeline import LDMSegPipeline

    pipe = LDMSegPipeline.from_pretrained(pipeline)
    pipe.use_sampler(SERVING["sampler"], SERVING["spacing"])
    pipe.register_to_config(default_num_inference_steps=SERVING["steps"],
                            default_ensemble_size=SERVING["ensemble_size"], default_precision=SERVING["precision"],
                            task_num_inference_steps=SERVING["task_steps"])
    pipe.save_pretrained(directory)


def replace_directory(tmp: Path, target: Path) -> None:
    """Halve and clean `tmp`, then put it in place of `target`."""
    halve(tmp)
    drop_local_paths(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    print(f"packaged {target} ({size / 1e6:.1f} MB)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ae", help="mask AE save_pretrained directory (replaces the pipeline's instances AE)")
    ap.add_argument("--pipeline", help="LDMSegPipeline save_pretrained directory")
    ap.add_argument("--one-step", help="a one-step pipeline (`ldmseg distill`), packaged as demo-one-step with its "
                                       "own serving settings (one call, no ensemble)")
    args = ap.parse_args()
    if args.one_step:
        tmp = WEIGHTS / "demo-one-step.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(args.one_step, tmp)
        replace_directory(tmp, WEIGHTS / "demo-one-step")
        return
    if not (args.ae or args.pipeline):
        ap.error("give --pipeline, --ae, --one-step, or both of the first two")
    tmp = DEMO.with_name("demo.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if args.pipeline:
        save_for_serving(args.pipeline, tmp)
    else:  # swap the AE into the shipped demo: every other component stays as it is
        shutil.copytree(DEMO, tmp)
    if args.ae:
        shutil.rmtree(tmp / "mask_autoencoder", ignore_errors=True)
        shutil.copytree(args.ae, tmp / "mask_autoencoder")
    replace_directory(tmp, DEMO)


if __name__ == "__main__":
    main()
