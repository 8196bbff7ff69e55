"""Loading any stage-1 autoencoder from a save_pretrained directory (or hub id) by the class named in its
config, with one-line errors. Its own module, so that no autoencoder module imports another's loader."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ldmseg.errors import LDMSegError
from ldmseg.models.depth_autoencoder import DepthAutoencoder
from ldmseg.models.mask_autoencoder import MaskAutoencoder
from ldmseg.models.original_autoencoder import OriginalMaskAutoencoder
from ldmseg.models.saved import check_component_dir
from ldmseg.models.vae_mask_autoencoder import VAEMaskAutoencoder

AUTOENCODERS: dict[str, dict[str, type]] = {
    "ids": {"MaskAutoencoder": MaskAutoencoder, "VAEMaskAutoencoder": VAEMaskAutoencoder,
            "OriginalMaskAutoencoder": OriginalMaskAutoencoder},
    "depth": {"DepthAutoencoder": DepthAutoencoder},
}


def load_autoencoder(path: str | Path, kind: str = "ids") -> nn.Module:
    """An autoencoder of `kind` ('ids': label maps, instances or semantic; 'depth'), in eval mode."""
    config = Path(path) / "config.json"
    try:
        name = MaskAutoencoder.load_config(path).get("_class_name")
    except (OSError, ValueError) as e:
        raise LDMSegError(f"{config}: cannot read the model config ({str(e).splitlines()[0]})") from None
    classes = AUTOENCODERS[kind]
    if name not in classes:
        wanted = "a depth autoencoder" if kind == "depth" else "a mask autoencoder"
        raise LDMSegError(f"{config}: not {wanted} (class {name!r})")
    if Path(path).is_dir():
        check_component_dir(Path(path), classes[name])
    try:
        return classes[name].from_pretrained(path, use_safetensors=True).eval()
    except ValueError as e:  # e.g. a tensor of the wrong shape: diffusers' message does not name the folder
        raise LDMSegError(f"{path}: cannot load its weights ({str(e).splitlines()[0][:200]})") from None


def load_mask_autoencoder(path: str | Path) -> nn.Module:
    return load_autoencoder(path, "ids")
