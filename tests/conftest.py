"""Shared fixtures: tiny COCO-panoptic sets written by our own writer, and a guard against network attempts."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ldmseg.data.synthetic import SceneConfig, write_dataset


@pytest.fixture(scope="session")
def synth_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 64x64 synthetic scenes in COCO-panoptic layout."""
    out = tmp_path_factory.mktemp("synth")
    return write_dataset(out, 6, SceneConfig.preset("default", 64), seed=3, progress=False)


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> list:
    """Records (and refuses) every attempt to reach a host other than this one."""
    attempts: list = []
    real_connect = socket.socket.connect

    def guarded_connect(sock: socket.socket, address: object) -> object:
        local = not isinstance(address, tuple) or address[0] in ("127.0.0.1", "::1", "localhost")
        if not local:  # AF_UNIX paths and loopback are this machine
            attempts.append(address)
            raise OSError("network attempt refused by the test")
        return real_connect(sock, address)

    def guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
        attempts.append(host)
        raise OSError("name resolution refused by the test")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    return attempts


@pytest.fixture()
def silent_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list]:
    """The hub at a local server that accepts connections and never replies (a stalled hub), with an empty cache
    and 1 s timeouts. Yields the connections it accepted (a command must have tried it)."""
    from huggingface_hub import constants

    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    done, held = threading.Event(), []

    def accept_and_stay_silent() -> None:
        deadline = time.monotonic() + 60  # stops by itself, whatever the test does
        while not done.is_set() and time.monotonic() < deadline:
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                pass
        for conn in held:
            conn.close()
        server.close()

    threading.Thread(target=accept_and_stay_silent, daemon=True).start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 1)
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 1)
    try:
        yield held
    finally:
        done.set()
