"""Shipped demo weights (trained by our own code on synthetic scenes; see docs/training.md)."""

from __future__ import annotations

from pathlib import Path

from ldmseg.errors import LDMSegError

DEMO_DIR = Path(__file__).parent / "demo"


def demo_model_dir() -> Path:
    """Directory of the packaged demo model (save_pretrained layout, one folder per component)."""
    return DEMO_DIR


def resolve_model_path(path: str, component: str) -> Path | str:
    """'demo' -> the packaged component; a local directory as is; anything else is a hub id."""
    if path == "demo":
        found = DEMO_DIR / component
        if not (found / "config.json").exists():
            raise LDMSegError(f"{found}: the demo {component} is not in this installation")
        return found
    local = Path(path)
    if local.exists():
        if not (local / "config.json").exists():
            raise LDMSegError(f"{local}: not a model directory (no config.json)")
        return local
    if path.count("/") == 1 and not path.startswith((".", "/")):
        return path  # a hub id: diffusers downloads it when the network allows
    raise LDMSegError(f"{path}: model directory not found")


def resolve_pipeline_path(path: str) -> Path | str:
    """'demo' -> the packaged pipeline; a local directory (with model_index.json) as is; else a hub id."""
    if path == "demo":
        if not (DEMO_DIR / "model_index.json").exists():
            raise LDMSegError(f"{DEMO_DIR}: the demo pipeline is not in this installation (only its mask AE is)")
        return DEMO_DIR
    local = Path(path)
    if local.exists():
        if not (local / "model_index.json").exists():
            raise LDMSegError(f"{local}: not a pipeline directory (no model_index.json)")
        return local
    if path.count("/") == 1 and not path.startswith((".", "/")):
        return path
    raise LDMSegError(f"{path}: model directory not found")
