"""Nothing a command reads is ever overwritten, and nothing is written outside its output: names taken from input
files are plain names, and outputs that overlap inputs are refused before any work."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from ldmseg.cli import main


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def gt(synth_set: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "gt"
    shutil.copytree(synth_set, copy)
    return copy


@pytest.mark.parametrize("name", ["../../escaped.png", "/tmp/escaped-ldmseg.png", "a/../../escaped.png"])
def test_file_names_from_a_json_never_leave_their_folder(gt: Path, tmp_path: Path, name: str,
                                                         capsys: pytest.CaptureFixture) -> None:
    data = json.loads((gt / "panoptic.json").read_text())
    data["annotations"][0]["file_name"] = name
    (gt / "panoptic.json").write_text(json.dumps(data))
    before = digest(tmp_path)
    assert main(["predict", "--images", str(gt / "images"), "--gt-json", str(gt / "panoptic.json"), "--out",
                 str(tmp_path / "out" / "pred"), "--steps", "1", "--resolution", "64"]) == 2
    assert "must be a plain name" in capsys.readouterr().err
    assert digest(tmp_path) == before and not Path("/tmp/escaped-ldmseg.png").exists()


@pytest.mark.parametrize("command", ["predict-into-gt", "predict-into-images", "reconstruct-into-gt",
                                     "visualize-into-gt", "evaluate-onto-gt-json", "inpaint-onto-image"])
def test_outputs_that_overlap_inputs_are_refused_before_any_work(command: str, gt: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    image = next((gt / "images").iterdir())
    pairs = ["--gt-json", str(gt / "panoptic.json"), "--gt-dir", str(gt / "panoptic")]
    argv = {
        "predict-into-gt": ["predict", "--images", str(gt / "images"), "--gt-json", str(gt / "panoptic.json"),
                            "--out", str(gt)],
        "predict-into-images": ["predict", "--images", str(gt / "images"), "--out", str(gt / "images" / "o")],
        "reconstruct-into-gt": ["reconstruct", "--images", str(gt / "images"), *pairs, "--out", str(gt / "panoptic"),
                                "--ae", "demo"],
        "visualize-into-gt": ["visualize", "--images", str(gt / "images"), *pairs, "--out", str(gt / "panoptic")],
        "evaluate-onto-gt-json": ["evaluate", *pairs, "--pred-json", str(gt / "panoptic.json"), "--pred-dir",
                                  str(gt / "panoptic"), "--out", str(gt / "panoptic.json")],
        "inpaint-onto-image": ["inpaint", "--image", str(image), "--partial", str(gt / "panoptic" / image.name),
                               "--out", str(image)],
    }[command]
    before = digest(gt)
    assert main(argv) == 2
    assert "would overlap the input" in capsys.readouterr().err
    assert digest(gt) == before


def test_runs_resume_where_they_are_and_only_with_their_own_stage(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    tiny = ["--resolution", "32", "--val-resolution", "32", "--batch-size", "2", "--val-every", "100",
            "--checkpoint-every", "1", "--threads", "1", "--encoder-channels", "8", "8", "8", "8", "--decoder-channels",
            "8"]
    run = tmp_path / "run"
    assert main(["train-ae", "--out", str(run), "--max-steps", "1", *tiny]) == 0
    moved = tmp_path / "moved"
    shutil.move(run, moved)
    assert main(["train-ae", "--out", str(moved), "--resume", "latest", "--max-steps", "2"]) == 0
    assert json.loads((moved / "config.json").read_text())["out"] == str(moved)
    assert (moved / "checkpoints" / "step_00000002").is_dir()
    capsys.readouterr()
    assert main(["train", "--out", str(moved), "--resume", "latest"]) == 2
    err = capsys.readouterr().err
    assert "a run of the other stage" in err and "resume it with ldmseg train-ae" in err
    (moved / "config.json").unlink()
    assert main(["train-ae", "--out", str(moved), "--resume", "latest"]) == 2
    assert "has checkpoints but no config.json" in capsys.readouterr().err


def test_a_hub_id_offline_is_one_line_within_seconds(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import time

    from PIL import Image

    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "imgs" / "a.png")
    attempts: list = []

    def no_network(*args, **kwargs):
        attempts.append(args)
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    for env in ("", "1"):
        monkeypatch.setenv("HF_HUB_OFFLINE", env)
        start = time.perf_counter()
        assert main(["predict", "--model", "nobody/no-such-model", "--images", str(tmp_path / "imgs"), "--out",
                     str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert time.perf_counter() - start < 5 and len(err.splitlines()) == 1 and "nobody/no-such-model" in err
    assert not (tmp_path / "o").exists()


def test_a_hub_that_never_answers_is_one_line_within_its_timeouts(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                  silent_hub: list) -> None:
    """A local server that accepts connections and never replies stands in for a stalled hub."""
    import time

    from PIL import Image

    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "imgs" / "a.png")
    start = time.perf_counter()
    assert main(["predict", "--model", "owner/silent", "--images", str(tmp_path / "imgs"), "--out",
                 str(tmp_path / "o")]) == 2
    took = time.perf_counter() - start
    err = capsys.readouterr().err.strip()
    assert took < 15 and len(err.splitlines()) == 1 and silent_hub, err
    assert err.startswith("ldmseg: error: owner/silent: cannot download it from http://127.0.0.1:") and "1 s" in err
    assert "no reply in time" in err and not re.search(r"\w+(Error|Timeout|Exception)\b", err), err
    assert not (tmp_path / "o").exists()


def test_a_missing_local_path_is_not_taken_for_a_hub_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ldmseg.errors import LDMSegError
    from ldmseg.weights import resolve_model_path, resolve_pipeline_path

    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LDMSegError, match=r"models/camvidx: model directory not found \(models/ is a folder here"):
        resolve_pipeline_path("models/camvidx")
    with pytest.raises(LDMSegError, match="models/ae: model directory not found"):
        resolve_model_path("models/ae", "mask_autoencoder")
