"""`ldmseg predict` as a batch job: each image's result depends on the seed and its own key only (not the batch
size), a killed run continues where it stopped with the same final outputs, and a resumed --out refuses other
settings."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
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


def test_outputs_do_not_depend_on_the_batch_size_or_the_input_order(model_and_scenes: tuple[Path, Path], tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    model, images = model_and_scenes
    assert predict(model, images, tmp_path / "one", "--batch-size", "1") == 0
    assert predict(model, images, tmp_path / "three", "--batch-size", "3") == 0
    one, three = files_of(tmp_path / "one"), files_of(tmp_path / "three")
    assert "panoptic.json" in one and len(one) > 10
    assert one == three
    listed = "\n".join(str(p) for p in sorted(images.iterdir(), reverse=True))  # the same images, reversed
    monkeypatch.setattr("sys.stdin", io.StringIO(listed))
    assert predict(model, Path("-"), tmp_path / "reversed", "--batch-size", "2") == 0
    reversed_run = files_of(tmp_path / "reversed")
    assert {k: v for k, v in reversed_run.items() if k not in ("records.jsonl", "run.json")} == \
        {k: v for k, v in one.items() if k not in ("records.jsonl", "run.json")}


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


LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
          "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "ldmseg"]
BOOKKEEPING = {"records.jsonl", "records.rank0.jsonl", "records.rank1.jsonl"}


def same_outputs(single: Path, many: Path) -> None:
    """Every output file of a multi-process run is the single-process run's (the record files aside)."""
    one, two = files_of(single), files_of(many)
    assert {k for k in two if k not in BOOKKEEPING} == {k for k in one if k not in BOOKKEEPING}
    assert all(two[k] == one[k] for k in one if k not in BOOKKEEPING)


@pytest.mark.slow
def test_two_processes_give_the_single_process_outputs(model_and_scenes: tuple[Path, Path], tmp_path: Path) -> None:
    """`accelerate launch --multi_gpu --num_processes 2` on a machine without GPUs (torch.distributed over gloo; in
    accelerate 1.x `--cpu` alone starts one process): each process predicts its share, the first writes the JSON
    after a barrier; every output file is the single-process run's. The same for `inpaint` over a GT set."""
    model, images = model_and_scenes
    assert predict(model, images, tmp_path / "single", "--batch-size", "2") == 0
    args = ["predict", "--model", str(model), "--images", str(images), "--out", str(tmp_path / "two"), "--task",
            "panoptic", "--seed", "3", "--threads", "1", "--batch-size", "2"]
    res = subprocess.run(LAUNCH + args, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    same_outputs(tmp_path / "single", tmp_path / "two")
    assert {"records.rank0.jsonl", "records.rank1.jsonl"} <= set(files_of(tmp_path / "two"))
    gt = images.parent
    inpaint = ["inpaint", "--model", str(model), "--images", str(images), "--gt-json", str(gt / "panoptic.json"),
               "--gt-dir", str(gt / "panoptic"), "--drop-rate", "0.5", "--block-size", "8", "--steps", "2",
               "--threads", "1", "--seed", "5"]
    assert main([*inpaint, "--out", str(tmp_path / "inpaint-single"), "--batch-size", "3"]) == 0
    res = subprocess.run(LAUNCH + inpaint + ["--out", str(tmp_path / "inpaint-two"), "--batch-size", "1"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    same_outputs(tmp_path / "inpaint-single", tmp_path / "inpaint-two")
    assert "panoptic.json" in files_of(tmp_path / "inpaint-two")


def worker_pid(launcher: subprocess.Popen, rank: int) -> int | None:
    """The pid of one rank's worker process under an `accelerate launch` (Linux /proc: its environment's RANK)."""
    for proc in Path("/proc").iterdir():
        try:
            status = (proc / "status").read_text()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        ppid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:"))
        if ppid == launcher.pid and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the rank's process through /proc")
def test_a_rank_killed_mid_run_loses_nothing_and_the_run_continues(model_and_scenes: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    """kill -9 of one of two processes mid-run ends the run (the launcher stops the other one); what every
    process had recorded stays, and the same command again finishes with the uninterrupted run's outputs and no
    temporary file left."""
    model, images = model_and_scenes
    many = tmp_path / "images"
    many.mkdir()
    for copy in range(4):  # 20 images: enough that the kill lands mid-run
        for image in sorted(images.iterdir()):
            (many / f"{copy}_{image.name}").write_bytes(image.read_bytes())
    assert predict(model, many, tmp_path / "whole", "--batch-size", "1", "--steps", "3") == 0
    out = tmp_path / "killed"
    args = ["predict", "--model", str(model), "--images", str(many), "--out", str(out), "--task", "panoptic",
            "--seed", "3", "--threads", "1", "--batch-size", "1", "--steps", "3"]
    launcher = subprocess.Popen(LAUNCH + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (out / "records.rank1.jsonl").exists() or not (out / "records.rank1.jsonl").read_text():
            assert launcher.poll() is None and time.monotonic() < deadline, "the run ended before a record"
            time.sleep(0.05)
        pid = worker_pid(launcher, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        _, err = launcher.communicate(timeout=300)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0
    assert "ldmseg: stopped: another process of this run ended first" in err  # rank 0, in one line
    assert "rank      : 1" in err and "SIGKILL" in err  # the launcher's report names the rank that died
    assert "panoptic.json" not in files_of(out)
    kept = sum(len(p.read_text().splitlines()) for p in out.glob("records*.jsonl"))
    assert 1 <= kept < 20
    res = subprocess.run(LAUNCH + args, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    same_outputs(tmp_path / "whole", out)
    assert not list(out.rglob("*.tmp*"))


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
