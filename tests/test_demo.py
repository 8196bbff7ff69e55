"""The README's main job: `ldmseg demo` on the shipped weights."""

from __future__ import annotations

from pathlib import Path

from ldmseg import demo_model_dir
from ldmseg.cli import main
from ldmseg.commands.demo import run_demo


def test_demo_weights_are_packaged() -> None:
    ae = demo_model_dir() / "mask_autoencoder"
    assert (demo_model_dir() / "model_index.json").exists()
    assert (ae / "config.json").exists() and (ae / "diffusion_pytorch_model.safetensors").exists()
    size = sum(f.stat().st_size for f in demo_model_dir().rglob("*") if f.is_file())
    assert size < 30e6  # UNet, image encoder and three task AEs, float16


def test_demo_end_to_end(tmp_path: Path) -> None:
    results = run_demo(tmp_path / "demo", num=3, seed=5)
    assert set(results) == {"baseline (colour + components)", "mask AE reconstruction (stage 1)",
                            "LDMSeg (latent diffusion)"}
    for res in results.values():
        assert 0.0 <= res["All"]["pq"] <= 1.0
    assert (tmp_path / "demo" / "summary.html").exists() and (tmp_path / "demo" / "summary.png").exists()
    page = (tmp_path / "demo" / "summary.html").read_text()
    assert "PQ = SQ x RQ" in page and "VOID" in page and "mask AE row" in page  # the page explains itself
    assert main(["demo", "--out", str(tmp_path / "cli"), "--num", "2"]) == 0
