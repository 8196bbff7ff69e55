"""Start-up: `import ldmseg.pipeline` loads only the diffusers models it uses (ldmseg/fast_import.py), and the
deferred diffusers packages stay whole for everyone else. Module counts, not timings: timings are
bench/import_time.py's job."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Model modules diffusers would import eagerly; none of them is ldmseg's.
NOT_NEEDED = ["diffusers.models.autoencoders.autoencoder_asym_kl", "diffusers.models.autoencoders.vq_model",
              "diffusers.models.unets.unet_2d", "diffusers.models.transformers.transformer_flux"]
# What the light or optional parts of ldmseg must not drag into a prediction.
NEVER_AT_IMPORT = ["gradio", "matplotlib", "tensorboard", "torch.utils.tensorboard", "pycocotools",
                   "ldmseg.training", "ldmseg.app"]
# diffusers.models.* modules `import ldmseg.pipeline` may load (22 with diffusers 0.42; eager: 149+).
DIFFUSERS_MODEL_BUDGET = 40


def modules_after(code: str, eager: bool = False) -> dict:
    """Run `code` in a fresh interpreter; return which of the watched modules it loaded and how many of
    diffusers.models.*."""
    watch = NOT_NEEDED + NEVER_AT_IMPORT
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps({{'loaded': [m for m in {watch!r} if m in sys.modules], "
             f"'models': len([m for m in sys.modules if m.startswith('diffusers.models.')])}}))")
    env = {**os.environ, "LDMSEG_EAGER_IMPORTS": "1" if eager else "0"}
    res = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_pipeline_import_loads_only_what_it_uses():
    seen = modules_after("import ldmseg.pipeline")
    assert seen["loaded"] == []
    assert 0 < seen["models"] <= DIFFUSERS_MODEL_BUDGET


def test_eager_escape_hatch_imports_as_diffusers_does():
    seen = modules_after("import ldmseg.pipeline", eager=True)
    assert set(NOT_NEEDED) <= set(seen["loaded"])
    assert seen["models"] > DIFFUSERS_MODEL_BUDGET


def test_deferred_packages_stay_whole():
    code = """
import ldmseg.pipeline
import diffusers, diffusers.models.unets as unets
from diffusers.models.autoencoders import VQModel
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from ldmseg.models.image_encoder import AutoencoderKL as Ours
from ldmseg.models.denoiser import UNet2DConditionModel
assert diffusers.AutoencoderKL is AutoencoderKL is Ours
assert diffusers.UNet2DConditionModel is UNet2DConditionModel
assert "UNet2DModel" in dir(unets) and VQModel.__name__ == "VQModel"
from diffusers.models.transformers import Transformer2DModel
"""
    seen = modules_after(code)
    assert "diffusers.models.autoencoders.vq_model" in seen["loaded"]


def test_diffusers_imported_first_is_left_alone():
    code = """
import diffusers.models.autoencoders as before
import ldmseg.pipeline, sys
assert sys.modules["diffusers.models.autoencoders"] is before and "__getattr__" not in vars(before)
"""
    seen = modules_after(code)
    assert "diffusers.models.autoencoders.vq_model" in seen["loaded"]
