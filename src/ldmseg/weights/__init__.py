"""Shipped models, by name: `demo` (synthetic scenes; scripts/train_demo.sh), `demo-one-step` (the demo distilled
to one call per task; docs/usage.md, "One-step models"), `camvid` (CamVid road scenes, semantic, one-step) and
`camvid-diffusion` (the diffusion model it was fine-tuned from; scripts/train_camvid.sh). Each is an LDMSegPipeline
directory stored in float16."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ldmseg.errors import LDMSegError

DEMO_DIR = Path(__file__).parent / "demo"
NAMED = {"demo": DEMO_DIR, "demo-one-step": Path(__file__).parent / "demo-one-step",
         "camvid": Path(__file__).parent / "camvid", "camvid-diffusion": Path(__file__).parent / "camvid-diffusion"}


def demo_model_dir() -> Path:
    """Directory of the packaged demo model (an LDMSegPipeline directory; `mask_autoencoder/` inside)."""
    return DEMO_DIR


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # owner/name, as the hub spells repository ids
MODEL_FILES = ("*.json", "*.safetensors")  # what a saved pipeline or model needs: configs and safetensors weights


def _resolve(path: str, marker: str, what: str, component: str = "") -> Path:
    """A shipped model's name (`NAMED`) -> its folder (or its `component`); a local directory holding `marker` as
    is; 'owner/name' -> a hub id, downloaded (unless cached) to a local snapshot. A missing relative path whose
    first folder exists here (`models/camvidx`) is a missing local path, not a hub id."""
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
    check_hub_id(path, "model directory")
    return hub_model(path, MODEL_FILES)


def check_hub_id(path: str, what: str) -> None:
    """A path that does not exist here is a hub id only if it is spelled owner/name and its first folder is not a
    folder here (`models/camvidx` names a missing local path); otherwise one line saying which it is."""
    local = Path(path)
    if not local.is_absolute() and len(local.parts) > 1 and Path(local.parts[0]).is_dir():
        raise LDMSegError(f"{path}: {what} not found ({local.parts[0]}/ is a folder here, so this names a local "
                          "path, not a hub id)")
    if not HUB_ID.fullmatch(path):
        raise LDMSegError(f"{path}: {what} not found")


def hub_model(repo_id: str, patterns: Sequence[str] | None = None, timeout: float = 3.0) -> Path:
    """A hub id's local snapshot (the files matching `patterns`): the cached one when there is one (no network
    traffic), else downloaded under connect and read timeouts (`bound_hub_timeouts`). Offline (HF_HUB_OFFLINE),
    unreachable within `timeout` seconds, silent or refusing: one line instead of minutes of waiting."""
    import os
    import socket
    import threading
    from urllib.parse import urlparse

    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
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
    connect, read = bound_hub_timeouts()
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except hub_errors() as e:
        reason = _plain_reason(e)
        raise LDMSegError(f"{repo_id}: cannot download it from {constants.ENDPOINT}: {reason} (waited up to "
                          f"{connect:g} s to connect, {read:g} s for each reply: HF_HUB_ETAG_TIMEOUT, "
                          "HF_HUB_DOWNLOAD_TIMEOUT)") from None


def _plain_reason(e: BaseException) -> str:
    """The first line of a download error without the names of exception classes that libraries put in front
    ("Got: ..." -> "..."); a timeout is "no reply in time"."""
    text = (str(e).strip().splitlines() or [""])[0][:200]
    while (found := CLASS_PREFIX.match(text)) is not None:
        text = text[found.end():]
    timeout = "Timeout" in type(e).__name__ or "timed out" in text.lower()
    return "no reply in time" if timeout else text or "the download failed"


CLASS_PREFIX = re.compile(r"(Got|[A-Z]\w*(Error|Exception|Timeout|Warning)): ")  # "ReadTimeout: ", "Got: "


def _resolves(socket, host: str) -> bool:
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def hub_errors() -> tuple[type[BaseException], ...]:
    """What a hub download raises when the network or the hub fails: OS errors (huggingface_hub's HTTP and
    not-found errors are OSErrors), its EntryNotFoundError, and the errors of the HTTP library it uses."""
    import sys

    from huggingface_hub import get_session
    from huggingface_hub.errors import EntryNotFoundError

    library = sys.modules[type(get_session()).__module__.split(".")[0]]
    return (OSError, EntryNotFoundError, *((library.HTTPError,) if hasattr(library, "HTTPError") else ()))


def bound_hub_timeouts() -> tuple[float, float]:
    """Give every request huggingface_hub makes from now on a connect timeout (HF_HUB_ETAG_TIMEOUT, default 10 s)
    and a read timeout (HF_HUB_DOWNLOAD_TIMEOUT, default 10 s): some of its calls pass no timeout at all, and a
    hub that accepts the connection but never answers would hold them forever. A slow download that keeps
    receiving data is not cut. Returns (connect, read) in seconds."""
    from huggingface_hub import constants

    def limits() -> tuple[float, float]:
        return float(constants.HF_HUB_ETAG_TIMEOUT), float(constants.HF_HUB_DOWNLOAD_TIMEOUT)

    try:
        from huggingface_hub import set_client_factory
        from huggingface_hub.utils._http import default_client_factory
    except ImportError:  # a huggingface_hub without httpx clients: its own timeouts apply
        return limits()

    def bound(request: Any) -> None:  # an httpx request, before it is sent
        connect, read = limits()
        given = request.extensions.get("timeout") or {}
        wanted = {"connect": connect, "read": read, "write": read, "pool": connect}
        request.extensions["timeout"] = {k: min(given.get(k) or v, v) for k, v in wanted.items()}

    def client_factory() -> Any:
        client = default_client_factory()
        client.event_hooks = {**client.event_hooks, "request": [*client.event_hooks["request"], bound]}
        return client

    set_client_factory(client_factory)
    return limits()


def resolve_model_path(path: str, component: str) -> Path:
    """A single model (e.g. the mask autoencoder): 'demo' (the demo pipeline's component), a save_pretrained
    directory, or a hub id. 'demo-v2' (a legacy name: the v2 mask AE's before the demo pipeline shipped it) is
    the demo's mask autoencoder."""
    if path == "demo-v2" and component == "mask_autoencoder":
        path = "demo"
    return _resolve(path, "config.json", component.replace("_", " "), component)


def resolve_pipeline_path(path: str) -> Path:
    """A whole LDMSegPipeline: a shipped model's name ('demo', 'camvid'), a save_pretrained directory, or a hub
    id."""
    return _resolve(path, "model_index.json", "pipeline")
