"""Shipped demo weights (trained by our own code on synthetic scenes; see scripts/train_demo.sh)."""

from __future__ import annotations

from pathlib import Path

from ldmseg.errors import LDMSegError

DEMO_DIR = Path(__file__).parent / "demo"


def demo_model_dir() -> Path:
    """Directory of the packaged demo model (an LDMSegPipeline directory; `mask_autoencoder/` inside)."""
    return DEMO_DIR


def _resolve(path: str, demo: Path, marker: str, what: str) -> Path | str:
    """'demo' -> the packaged `demo`; a local directory holding `marker` as is; 'owner/name' -> a hub id."""
    if path == "demo":
        if not (demo / marker).exists():
            raise LDMSegError(f"{demo}: the demo {what} is not in this installation")
        return demo
    local = Path(path)
    if local.exists():
        if not (local / marker).exists():
            raise LDMSegError(f"{local}: not a {what} directory (no {marker})")
        return local
    if path.count("/") == 1 and not path.startswith((".", "/")):
        return path  # a hub id: diffusers downloads it when the network allows
    raise LDMSegError(f"{path}: model directory not found")


def resolve_model_path(path: str, component: str) -> Path | str:
    """A single model (e.g. the mask autoencoder): 'demo' (the demo pipeline's component), a save_pretrained
    directory, or a hub id. 'demo-v2' (a legacy name: the v2 mask AE's before the demo pipeline shipped it) is
    the demo's mask autoencoder."""
    if path == "demo-v2" and component == "mask_autoencoder":
        path = "demo"
    return _resolve(path, DEMO_DIR / component, "config.json", component.replace("_", " "))


def resolve_pipeline_path(path: str) -> Path | str:
    """A whole LDMSegPipeline: 'demo', a save_pretrained directory, or a hub id."""
    return _resolve(path, DEMO_DIR, "model_index.json", "pipeline")
