"""`ldmseg convert-original`: the authors' released checkpoints -> an ldmseg pipeline (or mask AE) directory, written
whole or not at all (built in memory, saved to a temporary folder beside --out, then renamed)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ldmseg.data.formats import usual_permissions
from ldmseg.errors import LDMSegError


def convert_original(out: str | Path, ldm: str | None = None, ae: str | None = None,
                     stable_diffusion: str | None = None, weights: str = "ema") -> str:
    """Convert and save; returns what was written, in words. Safetensors only."""
    from ldmseg.conversion import autoencoder_from_original, original_components
    from ldmseg.pipeline import LDMSegPipeline

    out = Path(out)
    check_out(out)
    if ldm:
        if not stable_diffusion:
            raise LDMSegError("convert-original --ldm needs --stable-diffusion DIR|HUB_ID (the UNet's configuration "
                              "and the image encoder; their code used CompVis/stable-diffusion-v1-4)")
        model = LDMSegPipeline(**original_components(ldm, stable_diffusion, ae, weights))
        what = f"an LDMSeg pipeline ({sum(p.numel() for p in model.unet.parameters()) / 1e6:.0f} M UNet parameters)"
    elif ae:
        model = autoencoder_from_original(ae)
        what = f"a mask autoencoder ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters)"
    else:
        raise LDMSegError("convert-original: give --ldm LDM.pt (with --stable-diffusion) and/or --ae AE.pt")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        usual_permissions(tmp)  # safetensors writes 0600 files; a model folder is read by others too
        if out.exists():
            out.rmdir()  # an empty folder (check_out refused anything else)
        os.replace(tmp, out)
    except OSError as e:
        raise LDMSegError(f"{out}: cannot write the converted model ({e.strerror or e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return what


def check_out(out: Path) -> None:
    """--out must be new or an empty folder: nothing of the user's (the checkpoints included) is ever replaced,
    and never the current folder or one above it (the result replaces the folder: `--out .` would pull it away from
    under the shell that runs the command)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LDMSegError(f"{out}: already exists and is not an empty folder; choose a new --out")
    if Path.cwd().resolve().is_relative_to(out.resolve()):
        raise LDMSegError(f"--out {out}: the current folder (or one above it); name a new folder, e.g. --out "
                          "converted")
    if not out.resolve().parent.is_dir():
        raise LDMSegError(f"{out.parent}: folder not found")
