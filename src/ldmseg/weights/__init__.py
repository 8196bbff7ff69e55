"""Shipped models, by name: `demo` (synthetic scenes; scripts/train_demo.sh) and `camvid` (CamVid road scenes,
semantic; scripts/train_camvid.sh). Each is an LDMSegPipeline directory stored in float16."""

from __future__ import annotations

from pathlib import Path

from ldmseg.errors import LDMSegError

DEMO_DIR = Path(__file__).parent / "demo"
NAMED = {"demo": DEMO_DIR, "camvid": Path(__file__).parent / "camvid"}


def demo_model_dir() -> Path:
    """Directory of the packaged demo model (an LDMSegPipeline directory; `mask_autoencoder/` inside)."""
    return DEMO_DIR


def _resolve(path: str, marker: str, what: str, component: str = "") -> Path | str:
    """A shipped model's name (`NAMED`) -> its folder (or its `component`); a local directory holding `marker` as
    is; 'owner/name' -> a hub id."""
    if path in NAMED:
        shipped = NAMED[path] / component if component else NAMED[path]
        if not (shipped / marker).exists():
            raise LDMSegError(f"{shipped}: the {path} {what} is not in this installation")
        return shipped
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
    return _resolve(path, "config.json", component.replace("_", " "), component)


def resolve_pipeline_path(path: str) -> Path | str:
    """A whole LDMSegPipeline: a shipped model's name ('demo', 'camvid'), a save_pretrained directory, or a hub
    id."""
    return _resolve(path, "model_index.json", "pipeline")
