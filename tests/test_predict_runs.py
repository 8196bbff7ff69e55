"""`ldmseg predict` as a batch job: each image's result depends on the seed and its own key only (not the batch
size), a killed run continues where it stopped with the same final outputs, and a resumed --out refuses other
settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_multitask import tiny_multitask_pipeline

from ldmseg.cli import main
from ldmseg.commands import predict as predict_command


@pytest.fixture(scope="module")
def model_and_scenes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    tiny_multitask_pipeline().save_pretrained(root / "mt")
    assert main(["data", "synth", "--out", str(root / "s"), "--num", "5", "--resolution", "32"]) == 0
    return root / "mt", root / "s" / "images"


def predict(model: Path, images: Path, out: Path, *extra: str) -> int:
    return main(["predict", "--model", str(model), "--images", str(images), "--out", str(out), "--task", "panoptic",
                 "--seed", "3", "--threads", "1", *extra])


def files_of(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_outputs_do_not_depend_on_the_batch_size(model_and_scenes: tuple[Path, Path], tmp_path: Path) -> None:
    model, images = model_and_scenes
    assert predict(model, images, tmp_path / "one", "--batch-size", "1") == 0
    assert predict(model, images, tmp_path / "three", "--batch-size", "3") == 0
    one, three = files_of(tmp_path / "one"), files_of(tmp_path / "three")
    assert "panoptic.json" in one and len(one) > 10
    assert one == three


def test_a_killed_run_continues_to_the_uninterrupted_result(model_and_scenes: tuple[Path, Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    model, images = model_and_scenes
    assert predict(model, images, tmp_path / "whole", "--batch-size", "2") == 0
    real_serve, calls = predict_command.serve, []

    def dying_serve(*args, **kwargs):
        pipe, serving = real_serve(*args, **kwargs)
        real_call = type(pipe).__call__

        def call(self, *a, **k):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt  # killed during the second batch
            return real_call(self, *a, **k)

        monkeypatch.setattr(type(pipe), "__call__", call)
        return pipe, serving

    monkeypatch.setattr(predict_command, "serve", dying_serve)
    assert predict(model, images, tmp_path / "resumed", "--batch-size", "2") == 130
    monkeypatch.undo()
    partial = files_of(tmp_path / "resumed")
    assert "panoptic.json" not in partial and partial["records.jsonl"].count(b"\n") == 2
    assert predict(model, images, tmp_path / "resumed", "--batch-size", "2") == 0
    assert files_of(tmp_path / "resumed") == files_of(tmp_path / "whole")
    assert not list((tmp_path / "resumed").rglob("*.tmp*"))


def test_a_resumed_out_refuses_settings_that_change_results(model_and_scenes: tuple[Path, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    model, images = model_and_scenes
    assert predict(model, images, tmp_path / "out") == 0
    assert predict(model, images, tmp_path / "out", "--steps", "1") == 2
    assert "made by a run with num_inference_steps = None, this run has 1" in capsys.readouterr().err
    assert predict(model, images, tmp_path / "out", "--batch-size", "1") == 0  # batch size changes nothing


@pytest.mark.slow
def test_two_processes_give_the_single_process_outputs(model_and_scenes: tuple[Path, Path], tmp_path: Path) -> None:
    """`accelerate launch --multi_gpu --num_processes 2` on a machine without GPUs (torch.distributed over gloo; in
    accelerate 1.x `--cpu` alone starts one process): each process predicts its share, the first writes the JSON
    after a barrier; every output file is the single-process run's."""
    model, images = model_and_scenes
    assert predict(model, images, tmp_path / "single", "--batch-size", "2") == 0
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "ldmseg", "predict",
           "--model", str(model),
           "--images", str(images), "--out", str(tmp_path / "two"), "--task", "panoptic", "--seed", "3",
           "--threads", "1", "--batch-size", "2"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    single, two = files_of(tmp_path / "single"), files_of(tmp_path / "two")
    bookkeeping = {"records.jsonl", "records.rank0.jsonl", "records.rank1.jsonl"}
    assert {k for k in two if k not in bookkeeping} == {k for k in single if k not in bookkeeping}
    assert all(two[k] == single[k] for k in single if k not in bookkeeping)
    assert {"records.rank0.jsonl", "records.rank1.jsonl"} <= set(two)


def test_predict_evaluates_its_own_outputs_at_the_end(model_and_scenes: tuple[Path, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    model, images = model_and_scenes
    gt = images.parent / "panoptic.json"
    assert predict(model, images, tmp_path / "p", "--gt-json", str(gt), "--evaluate") == 0
    printed = capsys.readouterr().out
    assert "class-aware panoptic quality (--task panoptic)" in printed and "All" in printed
    assert predict(model, images, tmp_path / "q", "--evaluate") == 2
    assert "predict --evaluate: give --gt-json" in capsys.readouterr().err


def test_the_gpu_check_script_plans_its_runs_without_a_gpu() -> None:
    """scripts/gpu_check.sh is kept ready for a lent GPU machine: its argument handling runs anywhere."""
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run(["bash", str(root / "scripts" / "gpu_check.sh")], env={**os.environ, "DRY_RUN": "1"},
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 12 and sum("--num_processes 4" in line for line in lines) == 6
    assert {p for line in lines for p in ("fp32", "bf16", "fp16") if f"--precision {p}" in line} == {"fp32", "bf16",
                                                                                                       "fp16"}
    bad = subprocess.run([sys.executable, str(root / "bench" / "gpu_check.py"), "--dry-run", "--full-images", "0"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "must be >= 1" in bad.stderr
