"""Copy a trained CamVid pipeline into src/ldmseg/weights/camvid (`--model camvid`), stored in float16, with its
serving defaults and the note of what it knows.

    python scripts/package_camvid.py --pipeline runs/camvid-ldmseg/model [--steps 1]

One step serves it: on CamVid val, 1 / 2 / 4 / 8 DDIM steps gave 58.5 / 57.5 / 56.3 / 55.7 mIoU (docs/benchmarks.md;
the trained x0-predicting model's first estimate is its best one).
"""

from __future__ import annotations

import argparse
import shutil

from package_demo import WEIGHTS, replace_directory

CAMVID = WEIGHTS / "camvid"
TRAINED_ON = ("CamVid road scenes only (367 train photos of Cambridge streets, 480x360, SegNet's 11 classes); "
              "it knows street scenes seen from a car, not other photographs")


def main() -> None:
    from ldmseg.pipeline import LDMSegPipeline

    ap = argparse.ArgumentParser()
    ap.add_argument("--pipeline", required=True, help="the trained LDMSegPipeline directory")
    ap.add_argument("--steps", type=int, default=1, help="serving sampling steps (default 1)")
    args = ap.parse_args()
    pipe = LDMSegPipeline.from_pretrained(args.pipeline)
    pipe.register_to_config(default_num_inference_steps=args.steps, default_ensemble_size=1,
                            default_precision="auto", trained_on=TRAINED_ON)
    tmp = CAMVID.with_name("camvid.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    replace_directory(tmp, CAMVID)


if __name__ == "__main__":
    main()
