"""Copy a trained CamVid pipeline into src/ldmseg/weights/NAME (`--model NAME`), stored in float16, with its
serving defaults and the note of what it knows.

    python scripts/package_camvid.py --pipeline runs/camvid-ldmseg/model --name camvid-diffusion [--steps 1]
    python scripts/package_camvid.py --pipeline runs/camvid-one-step/model --name camvid --train-val

`camvid` is the one-step fine-tune (`ldmseg distill`, trained on train + val as CamVid practice does), served in
one deterministic call; `camvid-diffusion` the diffusion model it came from, served at one DDIM step: on CamVid
val, 1 / 2 / 4 / 8 steps gave 58.5 / 57.5 / 56.3 / 55.7 mIoU (docs/benchmarks.md; the x0-predicting model's first
estimate is its best one).
"""

from __future__ import annotations

import argparse
import shutil

from package_demo import WEIGHTS, replace_directory

TRAINED_ON = ("CamVid road scenes only ({photos} of Cambridge streets, 480x360, SegNet's 11 classes); it knows "
              "street scenes seen from a car, not other photographs")


def main() -> None:
    from ldmseg.pipeline import LDMSegPipeline

    ap = argparse.ArgumentParser()
    ap.add_argument("--pipeline", required=True, help="the trained LDMSegPipeline directory")
    ap.add_argument("--name", default="camvid", choices=["camvid", "camvid-diffusion"])
    ap.add_argument("--steps", type=int, default=1, help="serving sampling steps (default 1)")
    ap.add_argument("--train-val", action="store_true", help="it was trained on train + val (its note says so)")
    args = ap.parse_args()
    pipe = LDMSegPipeline.from_pretrained(args.pipeline)
    photos = "367 train + 101 val photos" if args.train_val else "367 train photos"
    pipe.register_to_config(default_num_inference_steps=args.steps, default_ensemble_size=1,
                            default_precision="auto", trained_on=TRAINED_ON.format(photos=photos))
    target = WEIGHTS / args.name
    tmp = target.with_name(args.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    replace_directory(tmp, target)


if __name__ == "__main__":
    main()
