"""The README's main job: `ldmseg demo` on the shipped weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ldmseg import demo_model_dir
from ldmseg.cli import main
from ldmseg.commands.demo import run_demo
from ldmseg.machine import cpu_model


def test_demo_weights_are_packaged() -> None:
    ae = demo_model_dir() / "mask_autoencoder"
    assert (demo_model_dir() / "model_index.json").exists()
    assert (ae / "config.json").exists() and (ae / "diffusion_pytorch_model.safetensors").exists()
    size = sum(f.stat().st_size for f in demo_model_dir().rglob("*") if f.is_file())
    assert size < 30e6  # UNet, image encoder and three task AEs, float16


def test_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results = run_demo(tmp_path / "demo", num=3, seed=5)
    assert set(results) == {"baseline (colour + components)", "mask AE reconstruction (stage 1)",
                            "LDMSeg (latent diffusion)"}
    for res in results.values():
        assert 0.0 <= res["All"]["pq"] <= 1.0
    assert (tmp_path / "demo" / "summary.html").exists() and (tmp_path / "demo" / "summary.png").exists()
    page = (tmp_path / "demo" / "summary.html").read_text()
    assert "PQ = SQ x RQ" in page and "VOID" in page and "mask AE row" in page  # the page explains itself
    written = json.loads((tmp_path / "demo" / "results.json").read_text())  # scores with what measured them
    assert written["class_agnostic"] == {n: {k: r["All"][k] for k in ("pq", "sq", "rq")} for n, r in results.items()}
    assert written["precision"] in ("fp32", "bf16") and cpu_model() in written["machine"] and written["scenes"] == 3
    assert {"class-aware panoptic", "semantic", "depth"} <= set(written)
    assert "latent mean" not in capsys.readouterr().out  # numbers for AE developers only with --verbose
    assert main(["demo", "--out", str(tmp_path / "cli"), "--num", "2", "--verbose"]) == 0
    assert "latent std  per channel" in capsys.readouterr().out
