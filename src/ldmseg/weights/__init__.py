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
        return hub_model(path)
    raise LDMSegError(f"{path}: model directory not found")


def hub_model(repo_id: str, timeout: float = 3.0) -> Path | str:
    """A hub id: its local snapshot when the cache has one (loaded without any network traffic), else the id itself
    for diffusers to download, once the hub answers; offline (HF_HUB_OFFLINE) or unreachable, one line within
    `timeout` seconds instead of minutes of retries."""
    import os
    import socket
    import threading
    from urllib.parse import urlparse

    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (or not a valid id): decided below
        pass
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or constants.HF_HUB_OFFLINE:
        raise LDMSegError(f"{repo_id}: not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    found: list = []
    probe = threading.Thread(target=lambda: found.append(_resolves(socket, host)), daemon=True)
    probe.start()
    probe.join(timeout)
    if not (found and found[0]):
        raise LDMSegError(f"{repo_id}: not in the local Hugging Face cache and {host} is unreachable")
    return repo_id


def _resolves(socket, host: str) -> bool:
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


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
