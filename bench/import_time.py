"""Start-up cost (issue 37): wall time of fresh interpreters importing torch, torch._dynamo (which diffusers
imports), diffusers and ldmseg.pipeline, with diffusers' model subpackages deferred (ldmseg/fast_import.py, the
default) and eager (LDMSEG_EAGER_IMPORTS=1); then `ldmseg predict` on one 640x480 image (demo, instances) as a
whole process. Medians of interleaved repeats; run on a quiet machine.

    python bench/import_time.py --repeats 5
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save_results  # noqa: E402

IMPORTS = {
    "import torch": "import torch",
    "+ torch._dynamo (diffusers imports it)": "import torch._dynamo",
    "import diffusers": "import diffusers, diffusers.models.modeling_utils",
    "import ldmseg.pipeline": "import ldmseg.pipeline",
}


def wall(cmd: list[str], env: dict[str, str]) -> float:
    """Seconds one fresh process takes, start to exit; a failure stops the benchmark with its message."""
    start = time.perf_counter()
    res = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)}: {(res.stderr.strip().splitlines() or ['failed'])[-1]}")
    return time.perf_counter() - start


def photo_640x480(folder: Path) -> Path:
    """One synthetic scene resized to a 640x480 photo."""
    from PIL import Image

    from ldmseg.data.synthetic import SceneConfig, generate_scene

    image = generate_scene(0, SceneConfig.preset("default", 512)).image
    path = folder / "photo.png"
    Image.fromarray(image).resize((640, 480)).save(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    modes = {"deferred": {"LDMSEG_EAGER_IMPORTS": "0"}, "eager": {"LDMSEG_EAGER_IMPORTS": "1"}}
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        photo = photo_640x480(Path(tmp))
        ldmseg = str(Path(sys.executable).with_name("ldmseg"))
        for r in range(args.repeats):
            for mode, env in modes.items():
                for label, code in IMPORTS.items():
                    if mode == "eager" and "ldmseg" not in code:
                        continue
                    times.setdefault(f"{label} ({mode})" if "ldmseg" in code else label, []).append(
                        wall([sys.executable, "-c", code], env))
                out = Path(tmp) / f"out-{mode}-{r}"
                times.setdefault(f"ldmseg predict, one 640x480 image ({mode})", []).append(wall(
                    [ldmseg, "predict", "--images", str(photo), "--task", "instances", "--out", str(out),
                     "--threads", "2"], env))
    medians = {k: statistics.median(v) for k, v in times.items()}
    has_transformers = importlib.util.find_spec("transformers") is not None
    rows = "\n".join(f"| {k} | {v:.2f} |" for k, v in medians.items())
    extra = ("installed (diffusers then imports it: the vit and test extras)" if has_transformers
             else "absent (a plain install)")
    md = (f"## Start-up time ({machine()})\n\n"
          f"Fresh processes, median of {args.repeats} interleaved runs; transformers {extra}. "
          "`deferred` is the default (diffusers' model subpackages load on first use, ldmseg/fast_import.py); "
          "`eager` is LDMSEG_EAGER_IMPORTS=1. `python bench/import_time.py`.\n\n"
          "| what | seconds |\n|---|---|\n" + rows + "\n")
    print(md)
    save_results("import_time" + ("" if has_transformers else "_plain"),
                 {"machine": machine(), "transformers": has_transformers, "repeats": args.repeats,
                  "median_s": medians, "all_s": times}, md)


if __name__ == "__main__":
    main()
