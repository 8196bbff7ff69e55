"""Copy trained models into src/ldmseg/weights/demo (the layout `demo_model_dir()` serves).

    python scripts/package_demo.py --ae runs/demo-ae/model [--pipeline runs/demo-ldmseg/model]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "src" / "ldmseg" / "weights" / "demo"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ae", required=True, help="mask AE save_pretrained directory")
    ap.add_argument("--pipeline", help="LDMSegPipeline save_pretrained directory (its AE must be --ae)")
    args = ap.parse_args()
    tmp = DEMO.with_name("demo.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if args.pipeline:
        shutil.copytree(args.pipeline, tmp)
    else:
        tmp.mkdir(parents=True)
    shutil.rmtree(tmp / "mask_autoencoder", ignore_errors=True)
    shutil.copytree(args.ae, tmp / "mask_autoencoder")
    shutil.rmtree(DEMO, ignore_errors=True)
    tmp.rename(DEMO)
    size = sum(f.stat().st_size for f in DEMO.rglob("*") if f.is_file())
    print(f"packaged {DEMO} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
