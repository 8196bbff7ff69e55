"""Precision at inference: bf16 autocast for every task, and a UNet kept in bf16 alone where a process serves bf16
only (the CLI and the app)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_multitask import tiny_multitask_pipeline

from ldmseg.cli import main
from ldmseg.errors import LDMSegError


def test_bf16_precision_runs_every_task_and_stays_close_to_fp32() -> None:
    pipe = tiny_multitask_pipeline()
    image = np.random.default_rng(2).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    for task in ("instances", "semantic", "depth", "panoptic"):
        full = pipe(image, task=task, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
        half = pipe(image, task=task, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                    precision="bf16")
        for name in ("panoptic", "semantic", "depth"):
            a, b = getattr(full, name), getattr(half, name)
            assert (a is None) == (b is None), (task, name)
            if a is not None:
                assert b[0].shape == a[0].shape == (40, 56) and b[0].dtype == a[0].dtype
        if task == "depth":
            assert np.abs(half.depth[0] - full.depth[0]).mean() < 0.05
    with pytest.raises(LDMSegError, match="precision must be one of fp32, bf16, fp16, auto"):
        pipe(image, task="depth", precision="fp8")
    with pytest.raises(LDMSegError, match="float16 does not run on a CPU"):
        pipe(image, task="depth", precision="fp16")
    pipe.register_to_config(default_precision="bf16")
    assert pipe(image, task="depth", num_inference_steps=1).depth[0].dtype == np.float32
    from ldmseg.models.layers import native_bf16

    depth = {p: pipe(image, task="depth", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                     precision=p).depth[0] for p in ("fp32", "bf16", "auto")}
    assert np.array_equal(depth["auto"], depth["bf16" if native_bf16(torch.device("cpu")) else "fp32"])


def test_unet_kept_in_bf16_serves_like_autocast_and_refuses_fp32() -> None:
    """keep_unet_in_bf16 (what the CLI and the app do when they serve bf16): the UNet's weights are bf16 only,
    calls run under autocast as before and give the same maps up to bf16 rounding of the norm weights; fp32 is
    refused in one line instead of failing inside a conv."""
    pipe = tiny_multitask_pipeline()
    image = np.random.default_rng(3).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    autocast = pipe(image, task="depth", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                    precision="bf16").depth[0]
    assert pipe.serves_bf16("bf16") and not pipe.serves_bf16("fp32")
    pipe.keep_unet_in_bf16()
    assert {p.dtype for p in pipe.unet.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in pipe.image_encoder.parameters()} == {torch.float32}
    kept = pipe(image, task="depth", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                precision="bf16").depth[0]
    assert kept.dtype == np.float32 and np.abs(kept - autocast).mean() < 0.02
    assert pipe(image, task="instances", num_inference_steps=1, precision="auto").panoptic[0].shape == (40, 56)
    with pytest.raises(LDMSegError, match="precision fp32: this pipeline's UNet holds bf16 weights only"):
        pipe(image, task="depth", precision="fp32")


def test_cli_serving_bf16_keeps_only_bf16_unet_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ldmseg.commands import predict as predict_command

    tiny_multitask_pipeline().save_pretrained(tmp_path / "mt")
    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--num", "1", "--resolution", "32"]) == 0
    served = []
    real_load = predict_command.load_pipeline
    monkeypatch.setattr(predict_command, "load_pipeline",
                        lambda *a, **k: served.append(real_load(*a, **k)) or served[-1])
    for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        assert main(["predict", "--model", str(tmp_path / "mt"), "--images", str(tmp_path / "s" / "images"), "--out",
                     str(tmp_path / precision), "--task", "depth", "--precision", precision]) == 0
        assert {p.dtype for p in served[-1].unet.parameters()} == {dtype}
