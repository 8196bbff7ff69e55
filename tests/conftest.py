"""Shared fixtures: tiny COCO-panoptic sets written by our own writer, and a guard against network attempts."""

from __future__ import annotations

import socket
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
