"""Export one checkpoint of a stage-2 run (`ldmseg train` / `ldmseg distill`) as a pipeline, with its EMA weights,
as the run's own export at its end does: for a curve by step, or a model from before the end.

    python scripts/export_checkpoint.py runs/one-step runs/one-step/checkpoints/step_00000300 runs/ck300
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from diffusers.training_utils import EMAModel

from ldmseg.training.checkpoint import load_tree, replace_directory
from ldmseg.training.config import DiffusionConfig
from ldmseg.training.diffusion import DiffusionTask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="the run's --out folder (its config.json)")
    ap.add_argument("checkpoint", type=Path, help="one of RUN/checkpoints/step_*")
    ap.add_argument("out", type=Path, help="where the pipeline goes (save_pretrained layout)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task = DiffusionTask(DiffusionConfig.load(args.run / "config.json"))
    task.model.load_state_dict(load_tree(args.checkpoint, "model"))
    if task.cfg.ema_decay > 0:  # the loop's EMA over the trained parameters, as its final export uses
        trained = [p for p in task.model.parameters() if p.requires_grad]
        ema = EMAModel(trained, decay=task.cfg.ema_decay, foreach=True)
        ema.load_state_dict(load_tree(args.checkpoint, "ema"))
        ema.copy_to(trained)
    staging = args.out.with_name(args.out.name + ".tmp")  # the export appears whole or not at all
    task.save_model(task.model, staging)
    replace_directory(staging, args.out)
    print(f"exported {args.checkpoint} -> {args.out}")


if __name__ == "__main__":
    main()
