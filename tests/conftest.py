"""Shared fixtures: tiny COCO-panoptic sets written by our own writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from ldmseg.data.synthetic import SceneConfig, write_dataset


@pytest.fixture(scope="session")
def synth_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 64x64 synthetic scenes in COCO-panoptic layout."""
    out = tmp_path_factory.mktemp("synth")
    return write_dataset(out, 6, SceneConfig.preset("default", 64), seed=3, progress=False)
