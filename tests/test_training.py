"""The shared training loop on stage 1: checkpoints, exact resume, NaN guard, 2-process DDP, CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ldmseg.errors import LDMSegError
from ldmseg.models.mask_autoencoder import MaskAutoencoder
from ldmseg.training import checkpoint
from ldmseg.training.autoencoder import train_autoencoder
from ldmseg.training.config import AutoencoderConfig

TINY = ["--resolution", "32", "--val-resolution", "32", "--val-num", "4", "--batch-size", "2", "--encoder-channels",
        "4", "8", "8", "8", "--decoder-channels", "8", "--preset", "default", "--warmup-steps", "2", "--log-every", "1",
        "--threads", "1"]


def tiny_config(out: Path, **kw) -> AutoencoderConfig:
    base = dict(out=str(out), size=32, val_size=32, val_num=4, batch_size=2, encoder_channels=(4, 8, 8, 8),
                decoder_channels=8, preset="default", warmup_steps=2, log_every=1, threads=1, max_steps=4,
                checkpoint_every=2, val_every=0)
    base.update(kw)
    return AutoencoderConfig(**base)


def logged(run: Path, tag: str) -> dict[int, float]:
    values = {}
    for f in run.glob("tensorboard/events.out.tfevents.*"):
        ea = EventAccumulator(str(f))
        ea.Reload()
        if tag in ea.Tags()["scalars"]:
            values.update({e.step: e.value for e in ea.Scalars(tag)})
    return values


def model_state(run: Path, step: int) -> dict[str, torch.Tensor]:
    return checkpoint.load_tree(run / "checkpoints" / f"step_{step:08d}", "model")


def test_resume_continues_exactly(tmp_path: Path) -> None:
    full = tmp_path / "full"
    train_autoencoder(tiny_config(full))
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    shutil.copytree(full / "checkpoints" / "step_00000002", part / "checkpoints" / "step_00000002")
    train_autoencoder(tiny_config(part, resume="latest"))
    a, b = model_state(full, 4), model_state(part, 4)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la, lb = logged(full, "train/loss"), logged(part, "train/loss")
    assert la[3] == lb[3] and la[4] == lb[4]
    assert (part / "model" / "config.json").exists() and (part / "config.json").exists()
    assert checkpoint.load_tree(part / "checkpoints" / "step_00000004", "state")["step"] == 4
    mask = os.umask(0)
    os.umask(mask)
    modes = {str(f.relative_to(part)): oct(f.stat().st_mode & 0o777) for f in sorted(part.rglob("*")) if f.is_file()}
    assert any(name.endswith(".safetensors") for name in modes)  # weights (0600 from safetensors) read like the rest
    assert set(modes.values()) == {oct(0o666 & ~mask)}, modes


def test_checkpoint_limit_and_validation_logs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train_autoencoder(tiny_config(run, max_steps=6, checkpoint_every=1, checkpoints_total_limit=2, val_every=3))
    assert [p.name for p in checkpoint.list_checkpoints(run / "checkpoints")] == ["step_00000005", "step_00000006"]
    assert set(logged(run, "val/pq")) == {3, 6}
    assert logged(run, "lr")[1] < logged(run, "lr")[3]  # warmup


def test_nan_loss_stops_with_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ldmseg.training.autoencoder import AutoencoderTask

    calls = []
    real = AutoencoderTask.loss

    def poisoned(self, model, batch):
        calls.append(1)
        loss, logs = real(self, model, batch)
        return (loss * float("nan") if len(calls) == 3 else loss), logs

    monkeypatch.setattr(AutoencoderTask, "loss", poisoned)
    with pytest.raises(LDMSegError, match="loss became nan at step 3"):
        train_autoencoder(tiny_config(tmp_path / "nan", max_steps=5))
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "nan" / "checkpoints")] == ["step_00000002"]


def test_resume_from_missing_checkpoint_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LDMSegError, match="checkpoint directory not found"):
        train_autoencoder(tiny_config(tmp_path / "r", resume=str(tmp_path / "nope")))


@pytest.mark.slow
def test_two_process_ddp_cli(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
           "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "ldmseg", "train-ae", "--out", str(out),
           "--max-steps", "3", "--checkpoint-every", "3", "--val-every", "0", *TINY]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "ddp processes: 2" in res.stdout + res.stderr
    ckpt = out / "checkpoints" / "step_00000003"
    assert (ckpt / "rng_0.safetensors").exists() and (ckpt / "rng_1.safetensors").exists()
    assert (out / "model" / "diffusion_pytorch_model.safetensors").exists()


def test_bf16_mixed_precision_and_accumulation(tmp_path: Path) -> None:
    run = tmp_path / "bf16"  # own process: accelerate keeps one precision per process
    cmd = [sys.executable, "-m", "ldmseg", "train-ae", "--out", str(run), "--max-steps", "2", "--checkpoint-every", "2",
           "--val-every", "0", "--mixed-precision", "bf16", "--grad-accum", "2", "--ema-decay", "0.9", *TINY]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert set(logged(run, "train/loss")) == {1, 2}
    assert (run / "checkpoints" / "step_00000002" / "ema.safetensors").exists()


def test_time_limit_stops_with_a_checkpoint_and_a_model(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train_autoencoder(tiny_config(run, max_steps=50, time_limit_minutes=1e-6))
    steps = [checkpoint.load_tree(c, "state")["step"] for c in checkpoint.list_checkpoints(run / "checkpoints")]
    assert steps == [1]
    assert (run / "model" / "config.json").exists()


def test_fine_tune_decoder_only_keeps_the_encoder(tmp_path: Path) -> None:
    base = train_autoencoder(tiny_config(tmp_path / "base", max_steps=2))
    tuned = train_autoencoder(tiny_config(tmp_path / "tuned", max_steps=3, init_from=str(base), freeze_encoder=True,
                                          encoder_channels=(2, 2, 2, 2), lr=1e-2))
    a = MaskAutoencoder.from_pretrained(base).state_dict()
    b = MaskAutoencoder.from_pretrained(tuned).state_dict()  # --init-from wins over the architecture flags
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("encoder."))
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("decoder."))
    with pytest.raises(LDMSegError, match="--num-bits 7"):
        train_autoencoder(tiny_config(tmp_path / "bad", init_from=str(base), num_bits=8))
    slotted = train_autoencoder(tiny_config(tmp_path / "slots", max_steps=3, init_from=str(base), freeze_encoder=True,
                                            head="slots", slots=2, lr=1e-2))
    c = MaskAutoencoder.from_pretrained(slotted)
    assert c.config.head == "slots" and c.config.slots == 2
    assert all(torch.equal(a[k], c.state_dict()[k]) for k in a if k.startswith("encoder."))


def test_latent_anchor_keeps_a_fine_tuned_encoder_near_its_start(tmp_path: Path) -> None:
    base = train_autoencoder(tiny_config(tmp_path / "base", max_steps=2))
    free = train_autoencoder(tiny_config(tmp_path / "free", max_steps=4, init_from=str(base), lr=3e-2))
    held = train_autoencoder(tiny_config(tmp_path / "held", max_steps=4, init_from=str(base), lr=3e-2,
                                         latent_anchor=1e3))
    ids = torch.from_numpy(np.random.default_rng(0).integers(1, 20, (2, 32, 32)))
    start = MaskAutoencoder.from_pretrained(base).encode_ids(ids)

    def drift(run: Path) -> float:
        return float((MaskAutoencoder.from_pretrained(run).encode_ids(ids) - start).pow(2).mean() / start.var())

    assert 0 < drift(held) < drift(free)  # the encoder trained, and stayed nearer the latents stage 2 knows
    with pytest.raises(LDMSegError, match="trainable encoder"):
        train_autoencoder(tiny_config(tmp_path / "bad", init_from=str(base), freeze_encoder=True, latent_anchor=1.0))


def test_crop_training_with_new_options_resumes_exactly(tmp_path: Path) -> None:
    """Crops of masks made at two sizes, channels_last, the refined decoder and MLP head: exact resume."""
    crops = dict(size=48, scene_sizes=(48, 64), crop=32, crops_per_mask=3, channels_last=True,
                 decoder_refine=True, head_hidden=16, input_stem="unshuffle")
    full = tmp_path / "full"
    train_autoencoder(tiny_config(full, **crops))
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    shutil.copytree(full / "checkpoints" / "step_00000002", part / "checkpoints" / "step_00000002")
    train_autoencoder(tiny_config(part, resume="latest", **crops))
    a, b = model_state(full, 4), model_state(part, 4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    model = MaskAutoencoder.from_pretrained(full / "model")
    assert model.config.decoder_refine and model.config.head_hidden == 16 and model.config.input_stem == "unshuffle"
    with pytest.raises(LDMSegError, match="--scene-sizes and a .+. mix of --data need --crop"):
        train_autoencoder(tiny_config(tmp_path / "bad", scene_sizes=(32, 48)))


def test_resume_latest_restores_the_runs_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from ldmseg.cli import main

    run = tmp_path / "run"
    flags = ["--out", str(run), "--max-steps", "2", "--checkpoint-every", "2", "--val-every", "0", *TINY]
    assert main(["train-ae", *flags]) == 0
    assert main(["train-ae", "--out", str(run), "--resume", "latest", "--max-steps", "3"]) == 0  # no other flag
    saved = json.loads((run / "config.json").read_text())
    assert saved["batch_size"] == 2 and saved["size"] == 32 and saved["max_steps"] == 3
    assert checkpoint.load_tree(run / "checkpoints" / "step_00000003", "state")["step"] == 3
    capsys.readouterr()
    assert main(["train-ae", "--out", str(run), "--resume", "latest", "--batch-size", "4", "--max-steps", "4"]) == 2
    err = capsys.readouterr().err
    assert "--batch-size 4 differs from this run's 2" in err and len(err.strip().splitlines()) == 1


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(tmp_path: Path) -> None:
    full = tmp_path / "full"
    train_autoencoder(tiny_config(full, max_steps=6))
    part = tmp_path / "part"
    shutil.copytree(full / "checkpoints", part / "checkpoints")
    shutil.rmtree(part / "checkpoints" / "step_00000006")
    weights = part / "checkpoints" / "step_00000004" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    (part / "checkpoints" / "step_00000006.tmp").mkdir()  # leftovers of a killed write
    (part / "checkpoints" / "step_00000006.rng").mkdir()
    with pytest.warns(UserWarning, match="falling back to the previous checkpoint step_00000002"):
        train_autoencoder(tiny_config(part, max_steps=6, resume="latest"))
    a, b = model_state(full, 6), model_state(part, 6)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not [p for p in (part / "checkpoints").iterdir() if not p.name[5:].isdigit()]


def edit_part(step: Path, name: str, change) -> None:
    """Rewrite one part of a checkpoint (its JSON skeleton and tensors) through `change(tree) -> tree`."""
    from safetensors.torch import save_file

    tree = change(checkpoint.load_tree(step, name))
    tensors: dict[str, torch.Tensor] = {}
    (step / f"{name}.json").write_text(json.dumps(checkpoint._split(tree, name, tensors)))
    save_file(tensors, str(step / f"{name}.safetensors"))


DAMAGED_PARTS = {  # the part a damaged, hand-edited or foreign checkpoint gets wrong, and the change (None: garbage)
    "state-not-json": ("state", None),
    "state": ("state", lambda t: [1]),
    "state-step": ("state", lambda t: {**t, "step": "1"}),
    "state-scheduler": ("state", lambda t: {**t, "scheduler": {"x": 1}}),
    "rng": ("rng_0", lambda t: {"torch": torch.zeros(3)}),
    "model-shape": ("model", lambda t: {**t, next(iter(t)): torch.zeros(1)}),
    "model-extra": ("model", lambda t: {**t, "extra.weight": torch.zeros(1)}),
    "optimizer": ("optimizer", lambda t: {**t, "param_groups": t["param_groups"][:0]}),
}


@pytest.mark.parametrize("case", sorted(DAMAGED_PARTS))
def test_a_damaged_checkpoint_part_is_one_line_before_anything_is_written(
        case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from ldmseg.cli import main

    run = tmp_path / "run"
    assert main(["train-ae", "--out", str(run), "--max-steps", "1", "--checkpoint-every", "1", "--val-every", "0",
                 *TINY]) == 0
    part, change = DAMAGED_PARTS[case]
    if change is None:
        (run / "checkpoints" / "step_00000001" / f"{part}.json").write_text("{not json")
    else:
        edit_part(run / "checkpoints" / "step_00000001", part, change)
    config = (run / "config.json").read_bytes()
    capsys.readouterr()
    assert main(["train-ae", "--out", str(run), "--resume", "latest", "--max-steps", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"step_00000001: broken checkpoint ({part.split('_')[0]}: " in err[0], err
    assert (run / "config.json").read_bytes() == config and not (run / "checkpoints" / "step_00000002").exists()


KILL_POINTS = 3  # bench/kill_resume.py runs the same check at 20+ random points


def test_kill_at_random_points_then_resume_exactly(tmp_path: Path) -> None:
    import random
    import signal
    import time

    flags = ["--max-steps", "8", "--checkpoint-every", "1", "--val-every", "0", "--checkpoints-total-limit", "2",
             *TINY]
    full = tmp_path / "full"
    subprocess.run([sys.executable, "-m", "ldmseg", "train-ae", "--out", str(full), *flags], check=True,
                   capture_output=True, timeout=600)
    rng = random.Random(0)
    for k in range(KILL_POINTS):
        run = tmp_path / f"killed{k}"
        proc = subprocess.Popen([sys.executable, "-m", "ldmseg", "train-ae", "--out", str(run), *flags],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while not (run / "checkpoints").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        res = subprocess.run([sys.executable, "-m", "ldmseg", "train-ae", "--out", str(run), "--resume", "latest"],
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        a, b = model_state(full, 8), model_state(run, 8)
        assert all(torch.equal(a[x], b[x]) for x in a), f"kill point {k} did not resume exactly"
        assert not [p for p in (run / "checkpoints").iterdir() if not p.name[5:].isdigit()]
        assert not (run / "model.tmp").exists() and (run / "model" / "config.json").exists()
